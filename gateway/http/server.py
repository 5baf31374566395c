"""The serving process: uvicorn with the gateway's settings. `spillover serve` checks the
config, then replaces itself with this module (`Launch.replace_process`: same process id, so
signals and supervisors see no difference), so the process that serves holds only what
serving imports — not the CLI's terminal rendering, cost reports or SQL toolkit. The
settings uvicorn needs arrive on the command line, read from the config the CLI checked;
the app reads the config itself (`app_from_env`).
    python -P -m gateway.http.server --config FILE --host H --port P …
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import NoReturn


@dataclass(frozen=True)
class Launch:
    config: Path
    host: str
    port: int
    workers: int
    log_level: str
    max_header_bytes: int
    keep_alive_s: float
    graceful_shutdown_s: float
    forwarded_allow_ips: str  # comma-separated; empty: no proxy is trusted
    heavy_lane_nice: int  # -1: no heavy lane
    lane_socket: str  # set in the heavy lane's own process: it listens there

    def argv(self) -> list[str]:
        """This module's command line, with the interpreter running now; `-P` keeps the
        working directory off the import path (`_import_path` says what goes on it)."""
        args = [sys.executable, "-P", "-m", "gateway.http.server"]
        for field in fields(self):
            args += [f"--{field.name.replace('_', '-')}", str(getattr(self, field.name))]
        return args

    def replace_process(self) -> NoReturn:
        argv = self.argv()
        os.environ["PYTHONPATH"] = _import_path()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(argv[0], argv)

    @classmethod
    def from_argv(cls, argv: list[str] | None = None) -> Launch:
        parser = argparse.ArgumentParser(prog="gateway.http.server", description=__doc__)
        for field in fields(cls):
            kind = {"Path": Path, "int": int, "float": float}.get(str(field.type), str)
            parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, required=True)
        return cls(**vars(parser.parse_args(argv)))


def _import_path() -> str:
    """PYTHONPATH for the server: the folder this checkout of the gateway was imported from
    first, so the server runs the very code the CLI that checked the config ran."""
    import gateway

    here = str(Path(gateway.__file__).resolve().parent.parent)
    return os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)


def run(launch: Launch) -> None:
    from gateway.http.app import CONFIG_ENV, LOG_LEVEL_ENV
    from gateway.http.console.session import process_secret
    from gateway.http.lane_process import LANE_SOCKET_ENV, LaneProcess, become_lane

    os.environ[CONFIG_ENV] = str(launch.config.resolve())
    os.environ[LOG_LEVEL_ENV] = launch.log_level
    if launch.lane_socket:
        become_lane(launch.heavy_lane_nice)
        _serve(launch, uds=launch.lane_socket)
        return
    process_secret()  # the workers (and the lane) sign console sessions with one secret
    if launch.heavy_lane_nice < 0:
        _serve(launch)
        return
    lane = LaneProcess(
        lambda socket: replace(launch, workers=1, lane_socket=socket).argv(),
        launch.graceful_shutdown_s + 5,
    )
    lane.start()
    os.environ[LANE_SOCKET_ENV] = lane.socket  # the workers inherit it
    # uvicorn raises the signal that stopped it again once it is done: exit through
    # `finally` then, not by the default handler, so the lane is stopped too.
    stopped_by: list[int] = []

    def exit_by(signum: int, _frame: object) -> None:
        stopped_by.append(signum)
        raise SystemExit(128 + signum)

    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, exit_by)
    try:
        _serve(launch)
    finally:
        lane.stop()
        if stopped_by:  # and then end as uvicorn would have: by that signal
            signal.signal(stopped_by[0], signal.SIG_DFL)
            signal.raise_signal(stopped_by[0])


def _serve(launch: Launch, uds: str | None = None) -> None:
    # Imported here: `spillover serve` imports this module for `Launch` alone.
    import uvicorn

    from gateway.http.head_limits import BoundedHttpToolsProtocol

    uvicorn.run(
        "gateway.http.app:app_from_env",
        factory=True,
        host=launch.host,
        port=launch.port,
        uds=uds,
        workers=launch.workers,
        loop="uvloop",
        http=BoundedHttpToolsProtocol,
        ws="none",  # no WebSocket route: the library is never imported
        h11_max_incomplete_event_size=launch.max_header_bytes,
        lifespan="on",
        access_log=False,
        log_level=launch.log_level,
        log_config=None,  # ours: one format for the gateway's lines and uvicorn's
        timeout_graceful_shutdown=int(launch.graceful_shutdown_s),
        timeout_keep_alive=int(launch.keep_alive_s),
        server_header=False,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default: only named proxies here.
        proxy_headers=bool(launch.forwarded_allow_ips),
        forwarded_allow_ips=launch.forwarded_allow_ips or None,
    )


if __name__ == "__main__":
    run(Launch.from_argv())
