"""Ledgers of the last days with a known shape, for the pool's forecast: busy hours with
twenty 10,000-token requests in flight, the rest quiet (two)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path


def business_hours_ledger(db: Path, days: int, pool: str = "local") -> None:
    """Weekdays 09:00-17:00 UTC busy, up to now."""
    now = time.time()
    shaped_ledger(
        db, now - days * 86_400, now, lambda t: t.tm_wday < 5 and 9 <= t.tm_hour < 17, pool
    )


def shaped_ledger(
    db: Path, start: float, end: float, busy: Callable[[time.struct_time], bool], pool: str
) -> None:
    """Requests from `start` to `end`: one every 3 s while `busy(UTC time)`, else every 30 s;
    each holds 10,000 tokens for a minute."""
    from gateway.accounting.row import COLUMNS
    from gateway.accounting.store_sqlite import SqliteStore

    async def create() -> None:
        store = SqliteStore(str(db))
        await store.open()
        await store.close()

    asyncio.run(create())
    rows = []
    t = start
    while t < end - 60:
        row = {"uid": f"u{len(rows)}", "ts": t, "status": 200, "attempts_detail": "[]",
               "provider": pool, "model": "llama", "endpoint": "chat", "ingress": "openai",
               "request_id": f"r{len(rows)}", "latency_ms": 60_000.0, "prompt_tokens": 9_000,
               "completion_tokens": 1_000}  # fmt: skip
        rows.append(tuple(row.get(c, 0) for c in COLUMNS))
        t += 3.0 if busy(time.gmtime(t)) else 30.0
    with sqlite3.connect(db) as conn:
        conn.executemany(
            f"INSERT INTO spillover_ledger ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(COLUMNS))})",
            rows,
        )
