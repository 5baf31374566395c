"""Data the gateway reads from disk and never downloads: litellm's model price map and the
tiktoken encodings litellm ships. Taken from litellm's wheel when it is installed, else from
SPILLOVER_DATA_DIR (the image copies both there, so its request path needs no litellm)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DATA_DIR_ENV = "SPILLOVER_DATA_DIR"
PRICE_MAP = "model_prices_and_context_window_backup.json"


def _litellm_dir() -> Path | None:
    spec = importlib.util.find_spec("litellm")
    for location in (spec.submodule_search_locations or []) if spec else []:
        return Path(location)
    return None


def _data_dir() -> Path | None:
    configured = os.environ.get(DATA_DIR_ENV)
    return Path(configured) if configured else None


def price_map() -> Path | None:
    for directory in (_data_dir(), _litellm_dir()):
        if directory is not None and (directory / PRICE_MAP).exists():
            return directory / PRICE_MAP
    return None


def tokenizers() -> Path | None:
    """The directory of tiktoken's cached encodings (files named by the hash of their URL)."""
    data, library = _data_dir(), _litellm_dir()
    for directory in (
        data / "tokenizers" if data else None,
        library / "litellm_core_utils" / "tokenizers" if library else None,
    ):
        if directory is not None and directory.is_dir():
            return directory
    return None
