"""The ledger in PostgreSQL (or any database SQLAlchemy reaches), through SQLAlchemy's async
engine: imported only when `ledger.url` names one."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.accounting.row import COLUMNS
from gateway.accounting.store import LedgerStoreError, RowsRefused
from gateway.accounting.tables import engine_url, ledger_table, migrate


class SqlAlchemyStore:
    def __init__(self, url: str) -> None:
        self._engine: AsyncEngine = create_async_engine(engine_url(url), pool_pre_ping=True)
        self._insert = postgresql.insert(ledger_table).on_conflict_do_nothing(
            index_elements=["uid"]
        )

    async def open(self) -> None:
        try:
            await migrate(self._engine)
        except (SQLAlchemyError, OSError) as exc:
            raise LedgerStoreError(f"cannot migrate the ledger: {type(exc).__name__}") from exc

    async def insert(self, rows: list[tuple[Any, ...]]) -> None:
        values = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
        try:
            async with self._engine.begin() as conn:
                await conn.execute(self._insert, values)
        except SQLAlchemyError as exc:
            if refused_values(exc):
                raise RowsRefused(f"ledger insert refused: SQLSTATE {_sqlstate(exc)}") from exc
            raise LedgerStoreError(f"ledger insert failed: {type(exc).__name__}") from exc
        except OSError as exc:
            raise LedgerStoreError(f"ledger insert failed: {type(exc).__name__}") from exc

    async def close(self) -> None:
        await self._engine.dispose()


def _sqlstate(exc: SQLAlchemyError) -> str:
    return str(getattr(getattr(exc, "orig", None), "sqlstate", None) or "")


def refused_values(exc: SQLAlchemyError) -> bool:
    """The database refused a value rather than the connection failing: SQLSTATE class 22
    (data exception — too long, a NUL byte in text) or 23 (a constraint)."""
    return isinstance(exc, DataError | IntegrityError) or _sqlstate(exc)[:2] in ("22", "23")
