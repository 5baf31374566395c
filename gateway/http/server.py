"""The serving process: uvicorn with the gateway's settings. `spillover serve` checks the
config, then replaces itself with this module (same process id, so signals and supervisors
see no difference), so the process that serves holds only what serving imports — not the
CLI's terminal rendering, cost reports or SQL toolkit.
    python -P -m gateway.http.server --config FILE [--host H] [--port P] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def command(config: Path, host: str, port: int, workers: int, log_level: str) -> list[str]:
    """The argv that starts this module with the interpreter running now; `-P` keeps the
    working directory off the import path (see `import_path` for what goes on it)."""
    return [
        sys.executable, "-P", "-m", "gateway.http.server", "--config", str(config),
        "--host", host, "--port", str(port), "--workers", str(workers), "--log-level", log_level,
    ]  # fmt: skip


def import_path() -> str:
    """PYTHONPATH for the server: the folder this checkout of the gateway was imported from
    first, so the server runs the very code the CLI that checked the config ran."""
    import gateway

    here = str(Path(gateway.__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)


def run(config: Path, host: str, port: int, workers: int, log_level: str) -> None:
    # Imported here: `spillover serve` imports this module for `command` alone.
    import uvicorn

    from gateway.http.app import CONFIG_ENV, LOG_LEVEL_ENV
    from gateway.http.console.session import process_secret
    from gateway.http.head_limits import BoundedHttpToolsProtocol
    from policies.loader import load_config

    loaded = load_config(config)
    os.environ[CONFIG_ENV] = str(config.resolve())
    os.environ[LOG_LEVEL_ENV] = log_level
    process_secret()  # the workers sign console sessions with the same secret
    uvicorn.run(
        "gateway.http.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=BoundedHttpToolsProtocol,
        ws="none",  # no WebSocket route: the library is never imported
        h11_max_incomplete_event_size=loaded.server.max_header_bytes,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        log_config=None,  # ours: one format for the gateway's lines and uvicorn's
        timeout_graceful_shutdown=int(loaded.server.graceful_shutdown_s),
        timeout_keep_alive=int(loaded.server.keep_alive_s),
        server_header=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="gateway.http.server", description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    run(args.config, args.host, args.port, args.workers, args.log_level)


if __name__ == "__main__":
    main()
