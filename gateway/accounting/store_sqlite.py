"""The ledger in SQLite through aiosqlite (one connection, its own thread) and plain SQL from
`gateway.accounting.schema`: the default ledger, written without a SQL toolkit in the
serving process."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import aiosqlite

from gateway.accounting.schema import (
    SQLITE_INSERT,
    SQLITE_PRAGMAS,
    VERSION_TABLE,
    sqlite_create,
    to_current,
)
from gateway.accounting.store import LedgerStoreError, RowsRefused


class SqliteStore:
    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: aiosqlite.Connection | None = None

    async def open(self) -> None:
        await self.close()
        try:
            conn = await aiosqlite.connect(self._path, timeout=5.0)
        except (sqlite3.Error, OSError) as exc:
            raise LedgerStoreError(f"cannot open {self._path}: {type(exc).__name__}") from exc
        try:
            for pragma in SQLITE_PRAGMAS:
                await conn.execute(pragma)
            await self._migrate(conn)
        except (sqlite3.Error, OSError) as exc:
            await conn.close()
            raise LedgerStoreError(f"cannot migrate {self._path}: {type(exc).__name__}") from exc
        self._conn = conn

    @staticmethod
    async def _migrate(conn: aiosqlite.Connection) -> None:
        await conn.execute("BEGIN IMMEDIATE")  # one process migrates at a time
        try:
            for statement in sqlite_create():
                await conn.execute(statement)
            async with conn.execute(f"SELECT version FROM {VERSION_TABLE}") as cursor:
                found = await cursor.fetchone()
            for statement in to_current(None if found is None else found[0], "sqlite"):
                await conn.execute(statement)
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise

    async def insert(self, rows: list[tuple[Any, ...]]) -> None:
        if self._conn is None:
            raise LedgerStoreError(f"{self._path} is not open")
        try:
            await self._conn.executemany(SQLITE_INSERT, rows)
            await self._conn.commit()
        except (sqlite3.IntegrityError, sqlite3.DataError) as exc:
            await self._conn.rollback()
            raise RowsRefused(f"insert into {self._path} refused: {type(exc).__name__}") from exc
        except (sqlite3.Error, OSError) as exc:
            await self.close()  # reopened (and checked) on the next try
            failed = f"insert into {self._path} failed: {type(exc).__name__}"
            raise LedgerStoreError(failed) from exc

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error, OSError):  # it may have failed already
                await conn.close()
