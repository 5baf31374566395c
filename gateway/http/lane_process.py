"""The heavy lane's process: one more gateway beside the workers, listening on a Unix socket
in a private folder, at a lower CPU priority. The serving process starts it before its own
server, restarts it when it dies, and stops it after its own requests are done; the lane
dies with its parent (`PR_SET_PDEATHSIG`), so a killed gateway leaves no orphan.

    serve ──┬── workers (the port)        small requests, served here
            └── heavy lane (Unix socket)  large bodies and long histories, forwarded to it
"""

from __future__ import annotations

import ctypes
import getpass
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("spillover")

LANE_ENV = "SPILLOVER_LANE"  # "heavy" in the lane's own process
LANE_SOCKET_ENV = "SPILLOVER_HEAVY_LANE_SOCKET"  # where the workers find the lane
_PARENT_ENV = "SPILLOVER_LANE_PARENT"
_PR_SET_PDEATHSIG = 1
_RESTART_S = 1.0
_FOLDER_PREFIX = "spillover-lane-"


class LaneProcess:
    """Start, watch and stop the heavy lane; `argv` runs the lane on `socket`."""

    def __init__(self, argv: Callable[[str], list[str]], stop_s: float) -> None:
        _remove_stale_folders()
        # Mode 0700: no one else may open the socket.
        self._folder = tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{os.getpid()}-")
        self.socket = os.path.join(self._folder, "heavy.sock")
        self._argv = argv(self.socket)
        self._stop_s = stop_s
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._watcher: threading.Thread | None = None

    def start(self) -> None:
        self._process = self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="heavy-lane", daemon=True)
        self._watcher.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        # Its own session: a Ctrl-C in the terminal stops the workers first, and the lane
        # after them, while they may still be waiting on it.
        return subprocess.Popen(
            self._argv,
            env={**os.environ, LANE_ENV: "heavy", _PARENT_ENV: str(os.getpid())},
            start_new_session=True,
        )

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            code = process.wait()
            if self._stopping.is_set():
                return
            log.error("the heavy lane exited (%s): starting it again in %.0f s", code, _RESTART_S)
            if self._stopping.wait(_RESTART_S):
                return
            self._process = self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            # Listening: a graceful stop without SIGTERM's readiness drain (the workers are
            # done, nothing more will come). Still starting: it has served nothing, and a
            # signal before uvicorn takes them would print a traceback into the log.
            listening = os.path.exists(self.socket)
            process.send_signal(signal.SIGINT if listening else signal.SIGKILL)
            try:
                process.wait(self._stop_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        shutil.rmtree(self._folder, ignore_errors=True)


def become_lane(nice: int) -> None:
    """In the lane's process, first: yield the CPU to the workers, and die with the parent
    (which may already be gone: then now). Killed, as the parent was: the rows of what it
    answered are in the ledger's journal already, and its clients left with the parent."""
    os.nice(nice)
    # Stopped while still starting (before uvicorn takes the signals): quietly, not with a
    # KeyboardInterrupt's traceback in a log that may be JSON.
    signal.signal(signal.SIGINT, _quiet_exit)
    parent = int(os.environ.get(_PARENT_ENV, "0"))
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the parent's stop() still ends the lane
        return
    if parent and os.getppid() != parent:
        raise SystemExit("the heavy lane's parent is gone")


def _remove_stale_folders() -> None:
    """Folders left by gateways that were killed (their pid in the name is gone)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_FOLDER_PREFIX}*-*"):
        pid = folder.name.removeprefix(_FOLDER_PREFIX).split("-", 1)[0]
        if pid.isdigit() and folder.owner() == getpass.getuser() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _quiet_exit(_signum: int, _frame: object) -> None:
    raise SystemExit(0)
