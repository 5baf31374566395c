"""A ledger of the last days with a known weekly shape, for the pool's forecast: weekdays
09:00-17:00 UTC busy (twenty 10,000-token requests in flight), the rest quiet (two)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path


def business_hours_ledger(db: Path, days: int, pool: str = "local") -> None:
    from gateway.accounting.row import COLUMNS
    from gateway.accounting.store_sqlite import SqliteStore

    async def create() -> None:
        store = SqliteStore(str(db))
        await store.open()
        await store.close()

    asyncio.run(create())
    now = time.time()
    rows = []
    t = now - days * 86_400
    while t < now - 60:
        hour = time.gmtime(t)
        busy = hour.tm_wday < 5 and 9 <= hour.tm_hour < 17
        row = {"uid": f"u{len(rows)}", "ts": t, "status": 200, "attempts_detail": "[]",
               "provider": pool, "model": "llama", "endpoint": "chat", "ingress": "openai",
               "request_id": f"r{len(rows)}", "latency_ms": 60_000.0, "prompt_tokens": 9_000,
               "completion_tokens": 1_000}  # fmt: skip
        rows.append(tuple(row.get(c, 0) for c in COLUMNS))
        t += 3.0 if busy else 30.0
    with sqlite3.connect(db) as conn:
        conn.executemany(
            f"INSERT INTO spillover_ledger ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(COLUMNS))})",
            rows,
        )
