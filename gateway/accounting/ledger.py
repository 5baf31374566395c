"""The ledger: one row per request. A row is appended to the journal (`gateway.accounting.journal`)
before its answer completes, and this writer moves the journal into the database in
batches (at most `batch_size` rows, every `flush_ms`), off the response path. When the
database is away the rows wait in the journal (bounded on disk; past its bound new requests
are refused with 503 rather than answered without a row), and the writer retries. Each
row's `uid` is unique and inserts skip rows already there, so a journal read twice (after a
crash) can never bill a request twice. SQLite by default, PostgreSQL by URL; the schema is
created and migrated through a small version table."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import operator
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gateway.accounting.journal import Journal, JournalFull
from gateway.accounting.quarantine import Quarantine
from gateway.accounting.row import ADDED_COLUMNS, COLUMNS, LedgerRow
from gateway.accounting.store import LedgerStore, LedgerStoreError, RowsRefused
from policies.schema import LedgerConfig

log = logging.getLogger("spillover.ledger")


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite://` URL (':memory:' for none); None for another database."""
    if not url.startswith("sqlite://"):
        return None
    return url[len("sqlite:///") :] or ":memory:"


def store_for(url: str) -> LedgerStore:
    path = sqlite_path(url)
    if path is not None:
        from gateway.accounting.store_sqlite import SqliteStore

        return SqliteStore(path)
    from gateway.accounting.store_sql import SqlAlchemyStore

    return SqlAlchemyStore(url)


def journal_folder(config: LedgerConfig) -> Path:
    """The journal belongs to one database: beside a SQLite file, else named by the URL."""
    if config.journal_dir:
        return Path(config.journal_dir)
    if config.url.startswith("sqlite:///") and len(config.url) > len("sqlite:///"):
        return Path(config.url[len("sqlite:///") :] + ".journal")
    digest = hashlib.sha256(config.url.encode()).hexdigest()[:12]
    return Path(f"spillover-ledger-{digest}.journal")


class LedgerStartError(RuntimeError):
    """The ledger cannot keep rows at all; raised at start, so the process exits."""


class LedgerWriter:
    def __init__(
        self, config: LedgerConfig, on_state: Callable[[LedgerWriter], None] | None = None
    ) -> None:
        self._config = config
        self.journal = Journal(
            journal_folder(config), config.journal_segment_bytes, config.journal_max_bytes
        )
        # Rows the journal could not take (its disk failed): held here, bounded, and sent
        # to the database directly.
        self._unjournaled: deque[dict[str, Any]] = deque()
        self._legacy_spool = Path(config.spool_path)
        # Looked for once at start: only a gateway older than the journal wrote spools.
        replaying = self._legacy_spool.with_suffix(self._legacy_spool.suffix + ".replaying")
        self._legacy_spool_pending = self._legacy_spool.exists() or replaying.exists()
        self.quarantine = Quarantine(self.journal.folder)
        self._quarantined = self.quarantine.take()  # an earlier process's, tried again
        self._store: LedgerStore | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._db_ok: bool | None = None  # None until the first connection attempt
        self._last_try = 0.0
        self._on_state = on_state  # called with this writer after each batch
        self.written = 0
        self.errors = 0
        self.lost = 0
        self._journal_ok = True

    async def start(self) -> None:
        try:
            self.journal.open()
        except OSError as exc:
            # No row could be kept: the gateway must not start (and must say why).
            raise LedgerStartError(
                f"the ledger journal cannot be written at {self.journal.folder} "
                f"({exc.strerror or exc}): set ledger.journal_dir to a directory this "
                "process can write (in the image: /var/lib/spillover, its volume)"
            ) from exc
        self._store = store_for(self._config.url)
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _connect(self) -> bool:
        self._last_try = time.monotonic()
        assert self._store is not None
        try:
            await self._store.open()
        except LedgerStoreError as exc:
            if self._db_ok is not False:  # one line per change of state
                log.error(
                    "ledger database unreachable (%s); rows wait in the journal %s",
                    exc,
                    self.journal.folder,
                )
            self._db_ok = False
            return False
        if not self._db_ok:
            log.info("ledger database ready")
        self._db_ok = True
        return True

    def add(self, record: LedgerRow) -> None:
        """Keep the row; when this returns, a killed process no longer loses it."""
        try:
            self.journal.append(record)
        except (OSError, JournalFull) as exc:
            if self._journal_ok:
                log.error("ledger journal cannot take rows (%s); holding them in memory", exc)
            self._journal_ok = False
            self.errors += 1
            if len(self._unjournaled) < self._config.queue_size:
                self._unjournaled.append(record.as_dict())
            else:
                # Kept nowhere: only rows of requests refused before admission (401, 404)
                # get here, since admission stops at `accepting() == False`.
                self.lost += 1
        else:
            self._journal_ok = True
        if self.pending() >= self._config.batch_size:
            self._wake.set()

    def accepting(self) -> bool:
        """False when a new row could be kept nowhere: the journal is full or failing and
        the in-memory overflow is full too."""
        return len(self._unjournaled) < self._config.queue_size and (
            self._journal_ok or self._db_ok is not False
        )

    def pending(self) -> int:
        return self.journal.pending_rows + len(self._unjournaled)

    async def _run(self) -> None:
        """Never ends on an error: each is logged, counted and retried after a pause."""
        while True:
            if not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._config.flush_ms / 1000)
                self._wake.clear()
            try:
                moved = await self._move_once()
            except Exception as exc:
                self.errors += 1
                log.error("ledger writer failed (%s: %s); retrying", type(exc).__name__, exc)
                moved = False
            self._report()
            if self._closing and (not moved or not self.pending()):
                return
            if not moved and self.pending():
                await asyncio.sleep(0 if self._closing else 1.0)

    async def _move_once(self) -> bool:
        """Move everything pending to the database, batch by batch; False when it could
        not (the database is away)."""
        if not self._db_ok and (
            time.monotonic() - self._last_try < 1.0 or not await self._connect()
        ):
            return False
        try:
            if self._legacy_spool_pending:
                await self._replay_legacy_spool()
                self._legacy_spool_pending = False
            if self._quarantined:
                await self._insert(self._quarantined)
                self._quarantined = []
                self.quarantine.replayed()
            while self._unjournaled:
                batch = list(itertools.islice(self._unjournaled, self._config.batch_size))
                await self._insert(batch)
                for _ in batch:
                    self._unjournaled.popleft()
            while True:
                rows, used = self.journal.read(self._config.batch_size)
                if not used:
                    return True
                if rows:
                    await self._insert(rows)
                self.journal.commit(len(rows), used)
                await asyncio.sleep(0)  # let requests run between batches
        except (LedgerStoreError, OSError) as exc:
            log.error("ledger write failed (%s); rows wait in the journal", exc)
            self._db_ok = False
            self._last_try = time.monotonic()
            return False

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        """One batch; when the database refuses a value in it, row by row, and a row it
        refuses alone is set aside, never holding up the rows behind it."""
        assert self._store is not None
        try:
            await self._store.insert([_values(row) for row in rows])
        except RowsRefused:
            for row in rows:
                try:
                    await self._store.insert([_values(row)])
                except RowsRefused as refused:  # this row's own reason
                    self.quarantine.keep(row, str(refused))
                else:
                    self.written += 1
            return
        self.written += len(rows)

    async def _replay_legacy_spool(self) -> None:
        """Spool files left by a gateway older than the journal, streamed in batches (one
        whose replay was cut first)."""
        replaying = self._legacy_spool.with_suffix(self._legacy_spool.suffix + ".replaying")
        count = 0
        while replaying.exists() or self._legacy_spool.exists():
            if not replaying.exists():
                self._legacy_spool.replace(replaying)
            for batch in _batches(_spooled_rows(replaying), self._config.batch_size):
                await self._insert(batch)
                count += len(batch)
            replaying.unlink()
        log.info("ledger replayed %d rows from the old spool %s", count, self._legacy_spool)

    def spooled(self) -> int:
        """Rows waiting because the database is away."""
        return self.pending() if self._db_ok is False else 0

    @property
    def database_up(self) -> bool:
        return bool(self._db_ok)

    def _report(self) -> None:
        if self._on_state is not None:
            self._on_state(self)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Move what is pending to the database within `timeout_s`; what is left stays in the
        journal for the next process."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        if self._unjournaled:
            log.error("ledger: %d rows could be kept nowhere at exit", len(self._unjournaled))
        self.journal.close()
        self.quarantine.close()
        if self._store is not None:
            await self._store.close()


def _spooled_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as spool:
        for line in spool:
            if line.strip():
                yield json.loads(line)


def _values(row: dict[str, Any]) -> tuple[Any, ...]:
    """A row read back (a journal line, an old spool's) as the store takes it; a column it
    predates takes that column's default."""
    if len(row) == len(COLUMNS):  # written by this version: every column, nothing else
        try:
            return _ALL_COLUMNS(row)  # type: ignore[no-any-return]
        except KeyError:
            pass
    return tuple(row[c] if c in row else ADDED_COLUMNS.get(c) for c in COLUMNS)


_ALL_COLUMNS = operator.itemgetter(*COLUMNS)


def _batches(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
