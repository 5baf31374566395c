"""The ledger's schema as SQL text, derived from the typed row (`gateway.accounting.row`): the
SQLite table as SQLAlchemy would create it, and each later version's `ALTER TABLE`. Plain
strings, so the SQLite writer needs no SQL toolkit in the serving process; the PostgreSQL
path (`gateway.accounting.tables`) migrates with the same statements."""

from __future__ import annotations

from typing import Any, Literal

from gateway.accounting.row import COLUMN_SPECS, COLUMNS, Col

Dialect = Literal["sqlite", "postgresql"]

LEDGER_TABLE = "spillover_ledger"
VERSION_TABLE = "spillover_schema"
# Each version that changed values rather than columns, and how: version 8 made
# `error_class` one closed set (`gateway.errors.ERROR_CLASSES`). Before it, a row refused by
# the gateway held a class name or an OpenAI code in its place.
_ERROR_CLASS_RENAMES = {
    "InvalidRequest": "invalid_request",
    "invalid_request_error": "invalid_request",
    "invalid_api_key": "authentication_failed",
    "missing_api_key": "authentication_failed",
    "request_too_large": "payload_too_large",
    "rate_limit_exceeded": "gateway_rate_limited",
    "history_in_flight": "gateway_rate_limited",
    "stored_responses_quota": "stored_quota_reached",
}
VALUE_UPGRADES: dict[int, list[str]] = {
    8: [
        f"UPDATE {LEDGER_TABLE} SET error_class = '{new}' WHERE error_class = '{old}'"
        for old, new in _ERROR_CLASS_RENAMES.items()
    ]
}
SCHEMA_VERSION = max(max(col.since for _, col, _ in COLUMN_SPECS), *VALUE_UPGRADES)

# Write-ahead logging, synced at checkpoints: appends stop waiting on every fsync, and the
# journal holds a row until its transaction is in.
SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL")

SQLITE_INSERT = (
    f"INSERT OR IGNORE INTO {LEDGER_TABLE} ({', '.join(COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(COLUMNS))})"
)


def _literal(value: Any, dialect: Dialect) -> str:
    if isinstance(value, bool):
        if dialect == "sqlite":
            return "1" if value else "0"
        return "TRUE" if value else "FALSE"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def _column(name: str, col: Col, nullable: bool, dialect: Dialect) -> str:
    default = ""
    if col.added_default is not None:
        default = f" DEFAULT {_literal(col.added_default, dialect)}"
    return f"{name} {col.sql}{default}{'' if nullable else ' NOT NULL'}"


def sqlite_create() -> list[str]:
    """The tables at the current version, where they do not exist yet (SQLAlchemy's
    `create_all` of `gateway.accounting.tables` makes the same ones)."""
    columns = ["id INTEGER NOT NULL"]
    columns += [_column(name, col, nullable, "sqlite") for name, col, nullable in COLUMN_SPECS]
    columns.append("PRIMARY KEY (id)")
    columns += [f"UNIQUE ({name})" for name, col, _ in COLUMN_SPECS if col.unique]
    statements = [f"CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} ({', '.join(columns)})"]
    statements += [
        f"CREATE INDEX IF NOT EXISTS ix_{LEDGER_TABLE}_{name} ON {LEDGER_TABLE} ({name})"
        for name, col, _ in COLUMN_SPECS
        if col.index
    ]
    statements.append(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)")
    return statements


def to_current(version: int | None, dialect: Dialect) -> list[str]:
    """After the tables exist: what brings a ledger whose version row says `version` (None: a
    new ledger, no row yet) to the current version, its version row included."""
    if version is None:
        return [f"INSERT INTO {VERSION_TABLE} (version) VALUES ({SCHEMA_VERSION})"]
    if version >= SCHEMA_VERSION:
        return []
    return [*upgrades(version, dialect), f"UPDATE {VERSION_TABLE} SET version = {SCHEMA_VERSION}"]


def upgrades(version: int, dialect: Dialect) -> list[str]:
    """What takes a ledger table at `version` to the current one: the columns added since,
    then the values changed since."""
    columns = [
        f"ALTER TABLE {LEDGER_TABLE} ADD COLUMN {_column(name, col, nullable, dialect)}"
        for name, col, nullable in COLUMN_SPECS
        if col.since > version
    ]
    values = [
        statement
        for since, statements in sorted(VALUE_UPGRADES.items())
        if since > version
        for statement in statements
    ]
    return columns + values
