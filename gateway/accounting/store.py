"""Where the ledger writer puts rows: a one-method contract (plus open and close) with two
implementations, picked by the URL (`gateway.accounting.ledger.store_for`) and imported only
when picked — SQLite through aiosqlite with plain SQL (`store_sqlite`), anything else
through SQLAlchemy (`store_sql`, PostgreSQL)."""

from __future__ import annotations

from typing import Any, Protocol


class LedgerStoreError(Exception):
    """The database could not be reached or refused the write; the rows stay in the journal.
    Each store maps its driver's exceptions to this one, by type."""


class RowsRefused(LedgerStoreError):
    """The database is there but refused the rows' values (one it cannot hold): the same
    rows will fail again, so they are tried one by one and the refused set aside."""


class LedgerStore(Protocol):
    async def open(self) -> None:
        """Connect and bring the schema to the current version."""

    async def insert(self, rows: list[tuple[Any, ...]]) -> None:
        """Rows in `COLUMNS` order, in one transaction; a `uid` already there is skipped."""

    async def close(self) -> None: ...
