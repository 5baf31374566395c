"""The ledger writer when its journal's disk fails mid-run: no request path error, every row
still reaches the database (held in memory meanwhile), the failure counted and logged, and
when the rows could be kept nowhere the writer says so (readiness) instead of losing them
quietly."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.accounting.ledger import LedgerWriter
from gateway.accounting.row import LedgerRow
from policies.schema import LedgerConfig


def row(n: int) -> LedgerRow:
    return LedgerRow(
        ts=time.time(), uid=f"row-{n}", request_id=f"r{n}", key_name="k", team=None,
        route="m", endpoint="chat", provider="p", model="m", status=200, error_class=None,
        stream=False, prompt_tokens=1, cached_tokens=0, cache_write_tokens=0,
        completion_tokens=1, reasoning_tokens=0, cost_micro_usd=1, latency_ms=1.0,
        ttft_ms=None, attempts=1, attempts_detail="[]", fell_back=False, resumed=False,
        partial_stream=False, drill=None, usage_estimated=False, ingress="openai",
    )  # fmt: skip


def failing_disk(*_: object) -> None:
    raise OSError(28, "No space left on device")


async def test_a_failing_journal_holds_rows_in_memory_and_still_writes_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "ledger.sqlite"
    writer = LedgerWriter(LedgerConfig(url=f"sqlite:///{db}", flush_ms=10, queue_size=100))
    await writer.start()
    try:
        writer.add(row(0))
        monkeypatch.setattr(writer.journal, "append", failing_disk)
        for n in range(1, 11):
            writer.add(row(n))  # never raises into the request path
        assert writer.errors >= 1 and writer.accepting()
        assert "ledger journal cannot take rows" in caplog.text
        for _ in range(200):
            with sqlite3.connect(db) as conn:
                if conn.execute("SELECT count(*) FROM spillover_ledger").fetchone()[0] == 11:
                    break
            await asyncio.sleep(0.02)
        with sqlite3.connect(db) as conn:
            uids = {u for (u,) in conn.execute("SELECT uid FROM spillover_ledger")}
        assert uids == {f"row-{n}" for n in range(11)}
    finally:
        await writer.close()


async def test_rows_that_can_be_kept_nowhere_turn_the_writer_unready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "database-not-there-yet" / "ledger.sqlite"
    config = LedgerConfig(
        url=f"sqlite:///{missing}", journal_dir=str(tmp_path / "journal"), queue_size=5
    )
    writer = LedgerWriter(config)
    await writer.start()
    try:
        monkeypatch.setattr(writer.journal, "append", failing_disk)
        for n in range(5):
            writer.add(row(n))
        assert not writer.accepting()  # /health/ready turns 503; admission refuses
        writer.add(row(99))
        assert writer.lost == 1  # counted (spillover_ledger_rows_lost), never silent
    finally:
        await writer.close(timeout_s=0.5)
