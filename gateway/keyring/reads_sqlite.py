"""The keyring read from a SQLite ledger with plain SQL through aiosqlite (the ledger's own
driver): what every process does every `keyring.refresh_s`, without the SQL toolkit a
change needs (`store_sql.py`, imported at the first change) — 14 MB less in every process.
The file must exist (it is never made here) and be the one it was: a ledger moved away or
replaced is a database that does not answer."""

from __future__ import annotations

import contextlib
import os
import sqlite3

import aiosqlite

from gateway.errors import LedgerUnavailable
from gateway.keyring.records import StoredKey, StoredTeam
from gateway.keyring.rows import KEYS, TEAMS, VERSION, key_of, team_of


class SqliteReads:
    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: aiosqlite.Connection | None = None
        self._inode = -1

    async def version(self) -> int | None:
        """The keyring's version; None while no change has made its tables."""
        conn = await self._open()
        try:
            async with conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION,)
            ) as cursor:
                if await cursor.fetchone() is None:
                    return None
            async with conn.execute(f"SELECT version FROM {VERSION} WHERE id = 1") as cursor:
                found = await cursor.fetchone()
        except (sqlite3.Error, ValueError) as exc:  # ValueError: aiosqlite's closed connection
            await self.close()
            raise _unavailable(exc) from exc
        return None if found is None else int(found[0])

    async def load(self) -> tuple[int, list[StoredKey], list[StoredTeam]]:
        """Everything at one version: one read transaction."""
        conn = await self._open()
        try:
            await conn.execute("BEGIN")
            try:
                async with conn.execute(f"SELECT version FROM {VERSION} WHERE id = 1") as cur:
                    version = int((await cur.fetchone() or (0,))[0])
                async with conn.execute(f"SELECT * FROM {KEYS}") as cur:
                    keys = [key_of(row) for row in await cur.fetchall()]
                async with conn.execute(f"SELECT * FROM {TEAMS}") as cur:
                    teams = [team_of(row) for row in await cur.fetchall()]
            finally:
                await conn.rollback()
        except (sqlite3.Error, ValueError) as exc:
            await self.close()
            raise _unavailable(exc) from exc
        return version, keys, teams

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error, OSError):
                await conn.close()

    async def _open(self) -> aiosqlite.Connection:
        try:
            inode = os.stat(self._path).st_ino
        except OSError as exc:
            await self.close()
            raise _unavailable(exc) from exc
        if self._conn is not None and inode == self._inode:
            return self._conn
        await self.close()
        try:
            # isolation_level None: our BEGIN, not the driver's.
            conn = await aiosqlite.connect(
                f"file:{self._path}?mode=rw", uri=True, timeout=5.0, isolation_level=None
            )
        except (sqlite3.Error, OSError) as exc:
            raise _unavailable(exc) from exc
        conn.row_factory = sqlite3.Row
        self._conn, self._inode = conn, inode
        return conn


def _unavailable(exc: BaseException) -> LedgerUnavailable:
    return LedgerUnavailable(f"the keyring cannot be read ({type(exc).__name__})", retry_after=2.0)
