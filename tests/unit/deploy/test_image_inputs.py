"""What the image is built from: the request path's lock carries no litellm and no plotting,
and the data litellm would have brought (prices, tiktoken encodings) is read from
SPILLOVER_DATA_DIR instead."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway import bundled
from gateway.accounting.pricing import ModelPrice, PriceTable
from tests.support.processes import ROOT


def _pinned(lock: str) -> set[str]:
    text = (ROOT / lock).read_text()
    return {m.group(1) for m in re.finditer(r"^([a-z0-9_.-]+)==", text, re.M)}


def test_the_runtime_lock_leaves_the_long_tail_and_the_charts_out() -> None:
    runtime, full = _pinned("requirements-runtime.lock"), _pinned("requirements-full.lock")
    assert {"litellm", "matplotlib", "numpy", "openai"}.isdisjoint(runtime)
    assert {"tiktoken", "aiohttp", "uvicorn", "sqlalchemy", "asyncpg"} <= runtime
    assert {"litellm", "matplotlib"} <= full and runtime <= full
    assert {"pip", "setuptools", "wheel"} <= _pinned("requirements-build.lock")


def test_prices_and_encodings_come_from_the_data_dir_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    price = {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6}
    (tmp_path / bundled.PRICE_MAP).write_text(json.dumps({"only-here": price}))
    (tmp_path / "tokenizers").mkdir()
    monkeypatch.setenv(bundled.DATA_DIR_ENV, str(tmp_path))
    assert bundled.price_map() == tmp_path / bundled.PRICE_MAP
    assert bundled.tokenizers() == tmp_path / "tokenizers"
    table = PriceTable.load({})
    assert table.price("p", "only-here") == ModelPrice.per_million(1, 2)
    assert table.price("p", "gpt-4o") is None  # litellm's own map is not read then
