"""Rows the ledger database refused: set aside in a file beside the journal, so that the
batch they came in — and every batch after it — goes on. Counted (`spillover_ledger_
quarantined_rows`) and logged; replayed at the next start, after an operator has fixed
what the database refused (a row it still refuses comes back here)."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("spillover.ledger")


class Quarantine:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "quarantine.jsonl"
        self.kept = 0  # since start
        self._lock_fd: int | None = None  # held shared while this process lives

    def keep(self, row: dict[str, Any], reason: str) -> None:
        with self.path.open("ab") as out:
            out.write(orjson.dumps(row) + b"\n")
        self.kept += 1
        log.error(
            "ledger: the database refused row uid=%s (%s); set aside in %s",
            row.get("uid"), reason, self.path,
        )  # fmt: skip

    def take(self) -> list[dict[str, Any]]:
        """The rows set aside by an earlier process, to try again; the file they are read
        from goes only once they are in (`replayed`), so a crash meanwhile loses none. Only
        when no living process shares the folder (each holds its lock shared for its life:
        workers, the heavy lane): the file is theirs too, and may be growing."""
        try:  # the lock is held from now on
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return []  # a folder we cannot write: the journal says so when it opens
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
            return []
        try:
            return self._read()
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)

    def _read(self) -> list[dict[str, Any]]:
        replaying = self.path.with_suffix(".replaying")
        if not replaying.exists():
            if not self.path.exists():
                return []
            self.path.replace(replaying)
        return [orjson.loads(line) for line in replaying.read_bytes().splitlines() if line]

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def replayed(self) -> None:
        self.path.with_suffix(".replaying").unlink(missing_ok=True)
