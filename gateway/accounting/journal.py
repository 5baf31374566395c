"""The ledger's journal: every row is appended here (one JSON line, one `write` into the
OS, no fsync) before its answer's last byte leaves, so a killed process loses no row — only
a machine crash can lose what the OS had not yet written. The ledger writer reads the
journal back in order and moves it into the database; the journal is the queue, so memory
stays flat however far the database falls behind, and the disk is bounded by `max_bytes`.

Layout: one folder per ledger, each process writing its own segments
(`<owner>-<seq>.jsonl`, rotated at `segment_bytes`) under an exclusive lock on
`<owner>.lock`. A segment whose owner's lock is free belongs to a process that died: the next
process to start adopts it and reads it first. A segment is deleted once every row in it is
in the database; rows read twice after a crash are skipped by the database (`uid` unique).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("spillover.ledger")

_READ_CHUNK = 1024 * 1024


@dataclass(slots=True)
class _Segment:
    path: Path
    active: bool  # this process is still appending to it
    size: int  # bytes known to be in it


class JournalFull(Exception):
    """The journal holds `max_bytes` already: the database has been away too long."""


class Journal:
    def __init__(self, folder: Path, segment_bytes: int, max_bytes: int) -> None:
        self.folder = folder
        self._segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self._owner = f"{os.getpid()}-{time.time_ns()}"
        self._lock_fd: int | None = None
        self._write_fd: int | None = None
        self._seq = 0
        self._segments: deque[_Segment] = deque()
        self._held_locks: list[tuple[int, Path]] = []  # adopted owners' locks
        self._read_offset = 0  # in the first segment
        self._read_fd: int | None = None  # the first segment, open for reading
        self.pending_bytes = 0
        self.pending_rows = 0

    # --- ownership ---------------------------------------------------------------------

    def open(self) -> int:
        """Lock this process's place, adopt what dead processes left; returns rows adopted.
        Raises OSError when the folder cannot be written."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = self.folder / f"{self._owner}.lock"
        self._lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        adopted = self._adopt()
        self._start_segment()
        return adopted

    def _adopt(self) -> int:
        owners: dict[str, list[Path]] = {}
        for path in sorted(self.folder.glob("*.jsonl")):
            owners.setdefault(path.stem.rsplit("-", 1)[0], []).append(path)
        rows = 0
        for owner, paths in owners.items():
            lock = self.folder / f"{owner}.lock"
            fd: int | None = None
            if lock.exists():
                fd = os.open(lock, os.O_RDWR)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)  # its owner is alive: not ours
                    continue
                self._held_locks.append((fd, lock))
            for path in sorted(paths, key=lambda p: int(p.stem.rsplit("-", 1)[1])):
                size = path.stat().st_size
                self._segments.append(_Segment(path, active=False, size=size))
                self.pending_bytes += size
                rows += _count_lines(path)
        self.pending_rows += rows
        if rows:
            log.warning("ledger journal: adopted %d rows left by a stopped process", rows)
        return rows

    def _start_segment(self) -> None:
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._segments[-1].active = False
        self._seq += 1
        path = self.folder / f"{self._owner}-{self._seq}.jsonl"
        self._write_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._segments.append(_Segment(path, active=True, size=0))

    # --- appending ---------------------------------------------------------------------

    def append(self, row: Any) -> None:
        """One row (a dict, or a dataclass orjson writes as one), in the OS before this
        returns. JournalFull past `max_bytes`."""
        if self._write_fd is None:
            raise OSError("the ledger journal is not open")
        if self.pending_bytes >= self.max_bytes:
            raise JournalFull(f"the ledger journal holds {self.pending_bytes} bytes")
        line = orjson.dumps(row) + b"\n"
        view = memoryview(line)
        while view:
            written = os.write(self._write_fd, view)
            view = view[written:]
        segment = self._segments[-1]
        segment.size += len(line)
        self.pending_bytes += len(line)
        self.pending_rows += 1
        if segment.size >= self._segment_bytes:
            self._start_segment()

    # --- reading back ------------------------------------------------------------------

    def read(self, limit: int) -> tuple[list[dict[str, Any]], int]:
        """Up to `limit` rows not yet committed, in order, and the bytes they span; the
        read position moves only with `commit`."""
        while self._segments:
            segment = self._segments[0]
            if self._read_offset < segment.size:
                if self._read_fd is None:
                    self._read_fd = os.open(segment.path, os.O_RDONLY)
                size = min(_READ_CHUNK, segment.size - self._read_offset)
                chunk = os.pread(self._read_fd, size, self._read_offset)
                rows, used = _parse_lines(chunk, limit, segment.path)
                if rows or used:
                    return rows, used
            if segment.active:
                return [], 0
            self._finish_first()
        return [], 0

    def commit(self, rows: int, used: int) -> None:
        """The `rows` just read (`used` bytes) are in the database."""
        self._read_offset += used
        self.pending_bytes = max(0, self.pending_bytes - used)
        self.pending_rows = max(0, self.pending_rows - rows)
        first = self._segments[0] if self._segments else None
        if first is not None and not first.active and self._read_offset >= first.size:
            self._finish_first()

    def _finish_first(self) -> None:
        segment = self._segments.popleft()
        leftover = segment.size - self._read_offset
        if leftover > 0:  # a torn last line (a machine crash mid-write): nothing to read
            log.error(
                "ledger journal: %d bytes of a torn row in %s skipped", leftover, segment.path
            )
            self.pending_bytes = max(0, self.pending_bytes - leftover)
        self._read_offset = 0
        self._close_reader()
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        self._release_finished_owners()

    def _close_reader(self) -> None:
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None

    def _release_finished_owners(self) -> None:
        live = {s.path.stem.rsplit("-", 1)[0] for s in self._segments}
        for fd, lock in list(self._held_locks):
            if lock.stem not in live:
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                os.close(fd)
                self._held_locks.remove((fd, lock))

    def close(self) -> None:
        """Stop appending. What is still pending stays on disk for the next process."""
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None
        if self._segments:
            self._segments[-1].active = False
        while self._segments and self._read_offset >= self._segments[0].size:
            self._finish_first()  # everything in it is in the database
        self._close_reader()
        for fd, _ in self._held_locks:
            os.close(fd)
        self._held_locks.clear()
        if self._lock_fd is not None:
            if not self._segments:
                (self.folder / f"{self._owner}.lock").unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None


def _parse_lines(chunk: bytes, limit: int, path: Path) -> tuple[list[dict[str, Any]], int]:
    """Up to `limit` whole lines of `chunk` as rows, and the bytes they took."""
    rows: list[dict[str, Any]] = []
    used = 0
    while len(rows) < limit:
        end = chunk.find(b"\n", used)
        if end < 0:
            break
        line = chunk[used:end]
        used = end + 1
        if line:
            try:
                rows.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                log.error("ledger journal: an unreadable row in %s skipped", path)
    return rows, used


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            count += chunk.count(b"\n")
    return count
