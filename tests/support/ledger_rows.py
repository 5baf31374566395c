"""A request's ledger row read back from a gateway's SQLite ledger, once its writer has it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any


def ledger_row(ledger: Path, request_id: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The one row of `request_id` — ours, or the id the client sent (`client_request_id`);
    the writer flushes in batches: poll until it is there."""
    deadline = time.monotonic() + timeout_s
    while True:
        db = sqlite3.connect(ledger)
        db.row_factory = sqlite3.Row
        query = "SELECT * FROM spillover_ledger WHERE request_id = ? OR client_request_id = ?"
        rows = [dict(r) for r in db.execute(query, (request_id, request_id))]
        db.close()
        if rows or time.monotonic() > deadline:
            assert len(rows) == 1, rows
            return rows[0]
        time.sleep(0.05)
