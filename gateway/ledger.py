"""The ledger: one row per request, written off the response path. Rows go into a bounded
queue and are inserted in batches (at most `batch_size` rows or `flush_ms` old); when the
database is unreachable, or the queue is full, rows are appended to a local spool file and
replayed later — never dropped. Each row's `uid` is unique and inserts skip rows already there,
so a replay can never bill a request twice. SQLite by default, PostgreSQL by URL; the
schema is created and migrated through a small version table."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    false,
    select,
    text,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from policies.schema import LedgerConfig

log = logging.getLogger("spillover.ledger")

metadata = MetaData()

ledger_table = Table(
    "spillover_ledger",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("ts", Float, nullable=False, index=True),
    # Ours, unique per request; the client's x-request-id may repeat and is kept apart.
    Column("uid", String(64), nullable=False, unique=True),
    Column("request_id", String(128), nullable=False),
    Column("key_name", String(128)),
    # Only `ts` and `uid` are indexed: every index is paid on each insert, and reports scan
    # a time range anyway.
    Column("team", String(128)),
    Column("route", String(256)),
    Column("endpoint", String(32), nullable=False),
    Column("provider", String(128)),
    Column("model", String(256)),
    Column("status", Integer, nullable=False),
    Column("error_class", String(64)),
    Column("stream", Boolean, nullable=False),
    Column("prompt_tokens", Integer, nullable=False),
    Column("cached_tokens", Integer, nullable=False),
    Column("cache_write_tokens", Integer, nullable=False),
    Column("completion_tokens", Integer, nullable=False),
    Column("reasoning_tokens", Integer, nullable=False),
    Column("cost_micro_usd", BigInteger),  # NULL: the model's price is unknown
    Column("latency_ms", Float, nullable=False),
    Column("ttft_ms", Float),
    Column("attempts", Integer, nullable=False),
    Column("attempts_detail", Text, nullable=False),
    Column("fell_back", Boolean, nullable=False),
    Column("resumed", Boolean, nullable=False),
    Column("partial_stream", Boolean, nullable=False),
    # Drill traffic: the x-spillover-drill scope and the faults injected ("f3:error", …).
    Column("drill", String(256)),
    # Tokens estimated by the gateway: a stream cut (client gone, upstream broken) before the
    # upstream reported its usage. The provider billed something; this is our best count.
    Column("usage_estimated", Boolean, nullable=False, server_default=false()),
)

_COLUMNS = [c.name for c in ledger_table.columns if c.name != "id"]
# Columns added by later schema versions: a row spooled by an older gateway lacks them.
_ADDED_COLUMNS: dict[str, Any] = {"drill": None, "usage_estimated": False}
_SQLITE_INSERT = (
    f"INSERT OR IGNORE INTO spillover_ledger ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_COLUMNS))})"
)

schema_table = Table("spillover_schema", metadata, Column("version", Integer, nullable=False))

SCHEMA_VERSION = 3


def engine_url(url: str) -> str:
    """Plain URLs in the config; the async drivers are ours to pick."""
    for plain, driver in (
        ("sqlite://", "sqlite+aiosqlite://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


async def migrate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        version = (await conn.execute(select(schema_table.c.version))).scalar()
        if version is None:
            await conn.execute(schema_table.insert().values(version=SCHEMA_VERSION))
            return
        if version < 2:
            await conn.execute(text("ALTER TABLE spillover_ledger ADD COLUMN drill VARCHAR(256)"))
        if version < 3:
            await conn.execute(
                text(
                    "ALTER TABLE spillover_ledger "
                    "ADD COLUMN usage_estimated BOOLEAN NOT NULL DEFAULT FALSE"
                )
            )
        if version < SCHEMA_VERSION:
            await conn.execute(schema_table.update().values(version=SCHEMA_VERSION))


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    """Write-ahead logging, synced at checkpoints: appends stop waiting on every fsync,
    and a crash loses at most the last transactions (the spool covers the rest)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class LedgerWriter:
    def __init__(
        self, config: LedgerConfig, on_state: Callable[[int, int, bool], None] | None = None
    ) -> None:
        self._config = config
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(config.queue_size)
        self._spool = Path(config.spool_path)
        self._engine: AsyncEngine | None = None
        self._task: asyncio.Task[None] | None = None
        self._db_ok: bool | None = None  # None until the first connection attempt
        self._last_try = 0.0
        self._on_state = on_state  # (queue depth, spooled rows, db ok) for the metrics
        self.written = 0
        self._spooled = self._count_spool()

    async def start(self) -> None:
        self._engine = create_async_engine(engine_url(self._config.url), pool_pre_ping=True)
        if self._engine.dialect.name == "sqlite":
            event.listen(self._engine.sync_engine, "connect", _sqlite_pragmas)
        await self._connect()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _connect(self) -> bool:
        self._last_try = time.monotonic()
        assert self._engine is not None
        try:
            await migrate(self._engine)
        except (SQLAlchemyError, OSError) as exc:
            if self._db_ok is not False:  # one line per change of state
                log.error(
                    "ledger database unreachable (%s); spooling rows to %s",
                    type(exc).__name__,
                    self._spool,
                )
            self._db_ok = False
            return False
        if not self._db_ok:
            log.info("ledger database ready")
        self._db_ok = True
        return True

    def add(self, row: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(row)
        except asyncio.QueueFull:
            self._to_spool([row])

    async def _run(self) -> None:
        closing = False
        while not closing:
            first = await self._queue.get()
            if first is _CLOSE:
                return
            batch = [first]
            deadline = time.monotonic() + self._config.flush_ms / 1000
            while len(batch) < self._config.batch_size:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                try:
                    row = await asyncio.wait_for(self._queue.get(), wait)
                except TimeoutError:
                    break
                if row is _CLOSE:
                    closing = True
                    break
                batch.append(row)
            await self._write(batch)

    async def _write(self, batch: list[dict[str, Any]]) -> None:
        if not self._db_ok and (
            time.monotonic() - self._last_try < 1.0 or not await self._connect()
        ):
            self._to_spool(batch)
            return
        try:
            if self._spool.exists():
                await self._replay()
            await self._insert(batch)
        except (SQLAlchemyError, OSError) as exc:
            log.error("ledger write failed (%s); spooling %d rows", type(exc).__name__, len(batch))
            self._db_ok = False
            self._last_try = time.monotonic()
            self._to_spool(batch)
        self._report()

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        assert self._engine is not None
        async with self._engine.begin() as conn:
            if self._engine.dialect.name == "sqlite":
                # SQLite runs in this process: the plain statement costs half the CPU.
                await conn.exec_driver_sql(
                    _SQLITE_INSERT, [tuple(row[c] for c in _COLUMNS) for row in rows]
                )
            else:
                statement = postgresql.insert(ledger_table).on_conflict_do_nothing(
                    index_elements=["uid"]
                )
                await conn.execute(statement, rows)
        self.written += len(rows)

    def _to_spool(self, rows: list[dict[str, Any]]) -> None:
        with self._spool.open("a", encoding="utf-8") as spool:
            for row in rows:
                spool.write(json.dumps(row, separators=(",", ":")) + "\n")
        self._spooled += len(rows)
        self._report()

    async def _replay(self) -> None:
        replaying = self._spool.with_suffix(self._spool.suffix + ".replaying")
        self._spool.replace(replaying)
        rows = [
            {**_ADDED_COLUMNS, **json.loads(line)}
            for line in replaying.read_text().splitlines()
            if line
        ]
        try:
            for start in range(0, len(rows), self._config.batch_size):
                await self._insert(rows[start : start + self._config.batch_size])
        except BaseException:
            # Put them back in front of anything spooled meanwhile; duplicates are harmless.
            later = self._spool.read_text() if self._spool.exists() else ""
            self._spool.write_text(replaying.read_text() + later)
            replaying.unlink()
            self._spooled = self._count_spool()
            raise
        replaying.unlink()
        self._spooled = self._count_spool()  # rows spooled while replaying stay counted
        log.info("ledger replayed %d spooled rows", len(rows))

    def _count_spool(self) -> int:
        if not self._spool.exists():
            return 0
        with self._spool.open("rb") as spool:
            return sum(1 for _ in spool)

    def spooled(self) -> int:
        return self._spooled

    def _report(self) -> None:
        if self._on_state is not None:
            self._on_state(self._queue.qsize(), self.spooled(), bool(self._db_ok))

    async def close(self, timeout_s: float = 10.0) -> None:
        """Flush everything queued (to the database, or the spool) before exiting."""
        if self._task is not None:
            await self._queue.put(_CLOSE)
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
        leftovers = [row for row in _drain(self._queue) if row is not _CLOSE]
        if leftovers:
            self._to_spool(leftovers)
        if self._engine is not None:
            await self._engine.dispose()


_CLOSE: dict[str, Any] = {}


def _drain(queue: asyncio.Queue[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    while not queue.empty():
        rows.append(queue.get_nowait())
    return rows
