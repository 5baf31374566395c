"""The SQLite ledger is made from plain SQL (no SQL toolkit on the request path); reports
query it through SQLAlchemy's table. Both must describe the same table."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine

from gateway.accounting.row import COLUMNS
from gateway.accounting.schema import SCHEMA_VERSION, upgrades
from gateway.accounting.store_sqlite import SqliteStore
from gateway.accounting.tables import metadata
from gateway.errors import ERROR_CLASSES


def _shape(db: Path) -> dict[str, object]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {
            "tables": sorted(tables),
            "columns": {t: conn.execute(f"PRAGMA table_info({t})").fetchall() for t in tables},
            "indexes": {
                t: sorted(
                    (unique, [c[2] for c in conn.execute(f"PRAGMA index_info('{name}')")])
                    for _, name, unique, *_ in conn.execute(f"PRAGMA index_list({t})")
                )
                for t in tables
            },
        }


def test_the_plain_sqlite_schema_is_sqlalchemys(tmp_path: Path) -> None:
    theirs = tmp_path / "sqlalchemy.sqlite"
    engine = create_engine(f"sqlite:///{theirs}")
    metadata.create_all(engine)
    engine.dispose()
    ours = tmp_path / "plain.sqlite"

    async def create() -> None:
        store = SqliteStore(str(ours))
        await store.open()
        await store.close()

    asyncio.run(create())
    assert _shape(ours) == _shape(theirs)
    with sqlite3.connect(ours) as conn:
        assert conn.execute("SELECT version FROM spillover_schema").fetchall() == [
            (SCHEMA_VERSION,)
        ]


def test_rows_go_in_once_and_a_second_copy_is_skipped(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    row = tuple(
        {"uid": "u1", "ts": 1.0, "status": 200, "attempts_detail": "[]"}.get(c, 0) for c in COLUMNS
    )

    async def write() -> None:
        store = SqliteStore(str(db))
        await store.open()
        await store.insert([row])
        await store.insert([row])  # a journal read twice after a crash
        await store.close()

    asyncio.run(write())
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT uid, status FROM spillover_ledger").fetchall() == [("u1", 200)]


def _columns(statements: list[str]) -> list[str]:
    return [s for s in statements if s.startswith("ALTER TABLE")]


def test_each_later_version_adds_its_columns_only() -> None:
    assert upgrades(SCHEMA_VERSION, "sqlite") == []
    version_9 = [  # the response cache's columns
        "ALTER TABLE spillover_ledger ADD COLUMN cache_hit BOOLEAN DEFAULT 0 NOT NULL",
        "ALTER TABLE spillover_ledger ADD COLUMN cache_saved_micro_usd BIGINT DEFAULT 0 NOT NULL",
    ]
    assert _columns(upgrades(8, "sqlite")) == version_9
    assert _columns(upgrades(7, "sqlite")) == version_9  # version 8 changed values only
    assert upgrades(4, "postgresql")[0] == (
        "ALTER TABLE spillover_ledger ADD COLUMN trace_id VARCHAR(32)"
    )
    assert _columns(upgrades(5, "postgresql")) == [
        "ALTER TABLE spillover_ledger ADD COLUMN dropped VARCHAR(1024)",
        "ALTER TABLE spillover_ledger ADD COLUMN resumed_by VARCHAR(384)",
        "ALTER TABLE spillover_ledger ADD COLUMN client_request_id VARCHAR(128)",
        "ALTER TABLE spillover_ledger ADD COLUMN cache_hit BOOLEAN DEFAULT FALSE NOT NULL",
        "ALTER TABLE spillover_ledger ADD COLUMN cache_saved_micro_usd BIGINT DEFAULT 0 NOT NULL",
    ]
    assert _columns(upgrades(6, "sqlite")) == [
        "ALTER TABLE spillover_ledger ADD COLUMN client_request_id VARCHAR(128)",
        *version_9,
    ]
    assert upgrades(2, "postgresql")[0] == (
        "ALTER TABLE spillover_ledger ADD COLUMN usage_estimated BOOLEAN DEFAULT FALSE NOT NULL"
    )
    assert "DEFAULT 0 NOT NULL" in upgrades(2, "sqlite")[0]


def test_version_8_moves_old_error_classes_into_the_closed_set(tmp_path: Path) -> None:
    db = tmp_path / "ledger.sqlite"
    old = ["InvalidRequest", "invalid_api_key", "rate_limit_exceeded", "upstream_unavailable"]

    async def open_close() -> None:
        store = SqliteStore(str(db))
        await store.open()
        await store.close()

    asyncio.run(open_close())
    later = {"cache_hit", "cache_saved_micro_usd"}  # version 9's
    columns = [c for c in COLUMNS if c not in later]
    with sqlite3.connect(db) as conn:  # as a version-7 gateway left it
        conn.execute("UPDATE spillover_schema SET version = 7")
        for column in sorted(later):
            conn.execute(f"ALTER TABLE spillover_ledger DROP COLUMN {column}")
        for n, value in enumerate([*old, None]):
            row = {"uid": f"u{n}", "ts": float(n), "status": 400, "attempts_detail": "[]"}
            values = tuple(row.get(c, 0) for c in columns)
            conn.execute(
                f"INSERT INTO spillover_ledger ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                values,
            )
            conn.execute(
                "UPDATE spillover_ledger SET error_class = ? WHERE uid = ?", (value, f"u{n}")
            )
    asyncio.run(open_close())
    with sqlite3.connect(db) as conn:
        found = [r[0] for r in conn.execute("SELECT error_class FROM spillover_ledger ORDER BY ts")]
        version = conn.execute("SELECT version FROM spillover_schema").fetchall()
    assert found == [
        "invalid_request", "authentication_failed", "gateway_rate_limited",
        "upstream_unavailable", None,
    ]  # fmt: skip
    assert set(found) - {None} <= ERROR_CLASSES
    assert version == [(SCHEMA_VERSION,)]


def test_serving_with_a_sqlite_ledger_imports_no_sql_toolkit() -> None:
    probe = (
        "import sys, gateway.http.app;"
        "print(sorted(m for m in ('sqlalchemy', 'httpx', 'jinja2', 'litellm', 'fastapi') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
