"""The ledger as SQLAlchemy tables, for what queries it (cost reports, capacity, the console)
and for the PostgreSQL writer; imported only by those, never on the SQLite request path."""

from __future__ import annotations

import re
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
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import false
from sqlalchemy.types import TypeEngine

from gateway.accounting.row import COLUMN_SPECS, Col
from gateway.accounting.schema import (
    LEDGER_TABLE,
    SQLITE_PRAGMAS,
    VERSION_TABLE,
    Dialect,
    to_current,
)

metadata = MetaData()

_TYPES: dict[str, TypeEngine[Any]] = {
    "FLOAT": Float(),
    "INTEGER": Integer(),
    "BIGINT": BigInteger(),
    "BOOLEAN": Boolean(),
    "TEXT": Text(),
}


def _sql_type(col: Col) -> TypeEngine[Any]:
    varchar = re.fullmatch(r"VARCHAR\((\d+)\)", col.sql)
    return String(int(varchar.group(1))) if varchar else _TYPES[col.sql]


def _ledger_table() -> Table:
    columns: list[Column[Any]] = [
        Column(
            "id",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        )
    ]
    for name, col, nullable in COLUMN_SPECS:
        extra: dict[str, Any] = {}
        if col.added_default is False:
            extra["server_default"] = false()
        elif isinstance(col.added_default, str):
            extra["server_default"] = col.added_default
        elif isinstance(col.added_default, int):  # a number, unquoted
            extra["server_default"] = text(str(col.added_default))
        columns.append(
            Column(
                name, _sql_type(col), nullable=nullable, index=col.index, unique=col.unique, **extra
            )
        )
    return Table(LEDGER_TABLE, metadata, *columns)


ledger_table = _ledger_table()
schema_table = Table(VERSION_TABLE, metadata, Column("version", Integer, nullable=False))


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
    """Create what is missing, then bring an older ledger table to the current version."""
    dialect: Dialect = "sqlite" if engine.dialect.name == "sqlite" else "postgresql"
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
        version = (await conn.execute(select(schema_table.c.version))).scalar()
        for statement in to_current(version, dialect):
            await conn.execute(text(statement))


def sqlite_pragmas(connection: Any, _record: Any) -> None:
    """The ledger's SQLite settings on each new connection (SQLAlchemy's `connect` event)."""
    cursor = connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()
