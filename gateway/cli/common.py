"""What every `spillover` subcommand shares: the error console, logging, loading a config."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import typer
from rich.console import Console

from gateway.logs import setup_logging as setup_logging
from policies.loader import ConfigError, load_config
from policies.schema import GatewayConfig

console = Console(stderr=True, soft_wrap=True)


def load_or_exit(path: Path) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            console.print(f"[red]error[/red] {issue}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        console.print(f"[red]error[/red] cannot read {path}: {exc.strerror}")
        raise typer.Exit(1) from None


def demo_config_path() -> Path:
    return Path(str(resources.files("config").joinpath("demo.yaml")))
