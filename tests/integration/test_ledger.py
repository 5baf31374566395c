"""The ledger through the HTTP surface: exactly one row per request whatever its outcome,
exact costs that agree with the Prometheus counter, spooling while the database is away,
a flush on shutdown, and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest

from gateway.accounting.pricing import PriceTable
from gateway.accounting.schema import SCHEMA_VERSION
from gateway.providers.base import Usage
from tests.support.processes import (
    ADMIN_KEY,
    GATEWAY_KEY,
    MockUpstream,
    failover_config,
    gateway_config,
    start_gateway,
)

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}


def _ledger(url: str, tmp: Path, flush_ms: int = 50) -> str:
    return f"ledger: {{url: '{url}', flush_ms: {flush_ms}, spool_path: '{tmp / 'spool.jsonl'}'}}\n"


def _rows(db: Path, expected: int, timeout: float = 10) -> list[sqlite3.Row]:
    deadline = time.monotonic() + timeout
    while True:
        if db.exists():
            with sqlite3.connect(db) as conn:
                conn.row_factory = sqlite3.Row
                try:
                    rows = conn.execute("SELECT * FROM spillover_ledger ORDER BY id").fetchall()
                except sqlite3.OperationalError:
                    rows = []
            if len(rows) >= expected:
                return rows
        if time.monotonic() > deadline:
            raise AssertionError(
                f"ledger has {len(rows) if db.exists() else 0} rows, expected {expected}"
            )
        time.sleep(0.05)


def test_one_row_per_request_whatever_happened(
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    tmp_path: Path,
    logs_dir: Path,
) -> None:
    db = tmp_path / "ledger.sqlite"
    config = gateway_config(
        openai_upstream.port, anthropic_upstream.port, extra=_ledger(f"sqlite:///{db}", tmp_path)
    )
    proc = start_gateway(config, logs_dir, name="ledger-sqlite")
    url = proc.url + "/v1/chat/completions"
    chat = {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    sent = 0
    try:
        with httpx.Client(headers=AUTH, timeout=10) as client:
            for _ in range(3):
                assert client.post(url, json=chat).status_code == 200
            with client.stream("POST", url, json={**chat, "stream": True}) as r:
                assert r.status_code == 200 and r.read()
            assert client.post(url, json={"model": "gpt-4o", "messages": "x"}).status_code == 400
            assert httpx.post(url, json=chat).status_code == 401
            assert client.post(url, json={**chat, "model": "nope"}).status_code == 404
            sent = 7
            openai_upstream.configure(cut_after=3)
            with client.stream("POST", url, json={**chat, "stream": True}) as r:
                r.read()  # ends with the error event
            openai_upstream.configure(cut_after=0, error_rate=1, error_status=500)
            anthropic_upstream.configure(error_rate=1, error_status=500)
            assert client.post(url, json=chat).status_code == 502
            openai_upstream.configure(error_rate=0, tokens_per_s=20, output_tokens=40)
            anthropic_upstream.configure(error_rate=0)
            with client.stream("POST", url, json={**chat, "stream": True, "max_tokens": 40}) as r:
                next(r.iter_bytes())  # the client walks away mid-stream
            sent = 10
        rows = _rows(db, sent)
        time.sleep(0.3)  # nothing more arrives late
        rows = _rows(db, sent)
        assert len(rows) == sent
        assert len({r["uid"] for r in rows}) == sent
        assert [r["status"] for r in rows] == [200, 200, 200, 200, 400, 401, 404, 502, 502, 499]
        assert rows[5]["key_name"] is None and rows[0]["team"] == "qa"
        assert [bool(r["partial_stream"]) for r in rows] == [False] * 7 + [True, False, True]
        assert json.loads(rows[7]["attempts_detail"])[0]["provider"] == "primary"
        # The cut stream and the walk-away never got the upstream's usage report: billed on
        # the gateway's own count (prompt, one token per relayed chunk), marked as such.
        assert [bool(r["usage_estimated"]) for r in rows] == [False] * 7 + [True, False, True]
        for cut in (rows[7], rows[9]):  # the prompt is billed (it was processed) ...
            assert cut["prompt_tokens"] == rows[0]["prompt_tokens"] and cut["cost_micro_usd"] > 0
        # ... and the output relayed: two content chunks after the role chunk, then the cut;
        # the walk-away left after the role chunk, long before the paced 40 tokens ended.
        assert rows[7]["completion_tokens"] == 2
        assert rows[9]["completion_tokens"] < 20
        table = PriceTable.load({})
        for row in rows[:4]:
            usage = Usage(
                prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"]
            )
            assert row["completion_tokens"] == 5
            assert row["cost_micro_usd"] == table.cost("primary", "gpt-4o", usage)
        total = sum(r["cost_micro_usd"] or 0 for r in rows)
        metrics = httpx.get(proc.url + "/metrics").text
        counted = sum(
            float(v) for v in re.findall(r"^spillover_cost_usd_total\{.*\} (\S+)$", metrics, re.M)
        )
        assert round(counted * 1_000_000) == total > 0
        estimated = re.findall(r"^spillover_usage_estimated_total\{.*\} (\S+)$", metrics, re.M)
        assert sum(float(v) for v in estimated) == 2
    finally:
        proc.stop()


def test_rows_wait_in_the_journal_while_the_database_is_away(
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    tmp_path: Path,
    logs_dir: Path,
) -> None:
    missing = tmp_path / "not-yet"
    db = missing / "ledger.sqlite"
    journal = tmp_path / "journal"
    config = failover_config(openai_upstream.port, anthropic_upstream.port) + (
        f"ledger: {{url: 'sqlite:///{db}', flush_ms: 50, journal_dir: '{journal}'}}\n"
    )
    proc = start_gateway(config, logs_dir, name="ledger-journal")
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    try:
        for _ in range(5):
            assert (
                httpx.post(proc.url + "/v1/chat/completions", json=body, headers=AUTH).status_code
                == 200
            )
        journaled = b"".join(p.read_bytes() for p in journal.glob("*.jsonl"))
        assert journaled.count(b"\n") == 5  # in the journal before each answer completed
        deadline = time.monotonic() + 5
        while "spillover_ledger_spooled_rows 5.0" not in (
            metrics := httpx.get(proc.url + "/metrics").text
        ):
            assert time.monotonic() < deadline, "the rows were not counted as waiting"
            time.sleep(0.05)
        assert "spillover_ledger_database_up 0.0" in metrics
        assert httpx.get(proc.url + "/health/ready").status_code == 200  # the journal has room
        missing.mkdir()  # the database becomes reachable
        assert (
            httpx.post(proc.url + "/v1/chat/completions", json=body, headers=AUTH).status_code
            == 200
        )
        rows = _rows(db, 6)
        assert len(rows) == 6 and len({r["uid"] for r in rows}) == 6
        deadline = time.monotonic() + 5
        while "spillover_ledger_queue_depth 0.0" not in httpx.get(proc.url + "/metrics").text:
            assert time.monotonic() < deadline, "the journal was not drained"
            time.sleep(0.05)
    finally:
        proc.stop()
    assert not list(journal.glob("*.jsonl")), "a drained journal leaves no segment behind"


def test_shutdown_flushes_what_is_queued(
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    tmp_path: Path,
    logs_dir: Path,
) -> None:
    db = tmp_path / "ledger.sqlite"
    config = failover_config(openai_upstream.port, anthropic_upstream.port) + _ledger(
        f"sqlite:///{db}", tmp_path, flush_ms=60_000
    )  # only a flush can write them
    proc = start_gateway(config, logs_dir, name="ledger-flush")
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    for _ in range(7):
        assert (
            httpx.post(proc.url + "/v1/chat/completions", json=body, headers=AUTH).status_code
            == 200
        )
    proc.stop()  # SIGTERM: graceful shutdown
    assert len(_rows(db, 7, timeout=1)) == 7


def _postgres_url() -> str:
    return os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


async def _pg_count(url: str, prefix: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        value = await conn.fetchval(
            "SELECT count(*) FROM spillover_ledger WHERE client_request_id LIKE $1", prefix + "%"
        )
        return int(value)
    finally:
        await conn.close()


def test_postgresql_ledger(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, tmp_path: Path, logs_dir: Path
) -> None:
    url = _postgres_url()
    try:
        asyncio.run(_pg_count(url, "probe"))
    except OSError as exc:
        pytest.fail(f"no PostgreSQL at {url} ({exc}); start it or set DATABASE_URL")
    except Exception:
        pass
    config = failover_config(openai_upstream.port, anthropic_upstream.port) + _ledger(url, tmp_path)
    proc = start_gateway(config, logs_dir, name="ledger-postgres")
    prefix = f"pg-{uuid.uuid4().hex[:8]}-"
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    try:
        for i in range(20):
            # The same client request id twice: two requests, two rows, none lost.
            headers = {**AUTH, "x-request-id": f"{prefix}{i // 2}"}
            assert (
                httpx.post(
                    proc.url + "/v1/chat/completions", json=body, headers=headers
                ).status_code
                == 200
            )
        deadline = time.monotonic() + 10
        while asyncio.run(_pg_count(url, prefix)) < 20:
            assert time.monotonic() < deadline, "rows did not reach PostgreSQL"
            time.sleep(0.1)
        time.sleep(0.3)
        assert asyncio.run(_pg_count(url, prefix)) == 20
    finally:
        proc.stop()


async def _pg(url: str, sql: str, *args: object) -> int:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval(sql, *args) or 0)
    finally:
        await conn.close()


def test_a_row_postgresql_refuses_is_set_aside_and_the_rest_go_on(
    openai_upstream: MockUpstream, tmp_path: Path, logs_dir: Path
) -> None:
    """A refused row once blocked its batch and every batch after it, until the journal
    filled and everyone got 503. Here PostgreSQL refuses one key's rows (a constraint an
    operator added); the others land, the refused row waits in quarantine.jsonl, counted,
    and is replayed at the next start once the database takes it."""
    url, tag = _postgres_url(), uuid.uuid4().hex[:8]
    journal = tmp_path / "journal"
    config = textwrap.dedent(f"""\
        ledger: {{url: '{url}', flush_ms: 30, journal_dir: '{journal}'}}
        providers: {{p: {{kind: openai, api_base: "http://127.0.0.1:{openai_upstream.port}/v1"}}}}
        routes: {{chat: {{targets: [{{provider: p, model: gpt-4o}}]}}}}
        keys:
          - {{name: fine-{tag}, key: "${{TEST_GATEWAY_KEY}}"}}
          - {{name: poison-{tag}, key: "${{TEST_ADMIN_KEY}}"}}
        """)  # fmt: skip
    proc = start_gateway(config, logs_dir, name="ledger-quarantine")  # migrates the table
    constraint = f"spillover_test_refuses_{tag}"
    asyncio.run(_pg(url, f"ALTER TABLE spillover_ledger ADD CONSTRAINT {constraint} "
                         f"CHECK (key_name <> 'poison-{tag}')"))  # fmt: skip
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    count = "SELECT count(*) FROM spillover_ledger WHERE key_name = $1"
    try:
        for key in [GATEWAY_KEY] * 5 + [ADMIN_KEY] + [GATEWAY_KEY] * 5:
            headers = {"Authorization": f"Bearer {key}"}
            reply = httpx.post(proc.url + "/v1/chat/completions", json=body, headers=headers)
            assert reply.status_code == 200
        deadline = time.monotonic() + 10
        while asyncio.run(_pg(url, count, f"fine-{tag}")) < 10:
            assert time.monotonic() < deadline, "the rows behind the refused one did not land"
            time.sleep(0.1)
        assert "spillover_ledger_quarantined_rows 1.0" in httpx.get(proc.url + "/metrics").text
        kept = [
            json.loads(line) for line in (journal / "quarantine.jsonl").read_text().splitlines()
        ]
        assert [row["key_name"] for row in kept] == [f"poison-{tag}"]
    finally:
        proc.stop()
        asyncio.run(_pg(url, f"ALTER TABLE spillover_ledger DROP CONSTRAINT {constraint}"))
    proc = start_gateway(config, logs_dir, name="ledger-quarantine-replay")
    try:
        deadline = time.monotonic() + 10
        while asyncio.run(_pg(url, count, f"poison-{tag}")) < 1:
            assert time.monotonic() < deadline, "the quarantined row was not replayed"
            time.sleep(0.1)
        assert not (journal / "quarantine.jsonl").exists()
    finally:
        proc.stop()


def _old_row(uid: str) -> dict[str, object]:
    """A row as a schema-1 gateway wrote (and spooled) it: no drill, no usage_estimated."""
    return {
        "uid": uid, "ts": time.time(), "request_id": uid, "key_name": "tests", "team": "qa",
        "route": "gpt-4o", "endpoint": "chat", "provider": "primary", "model": "gpt-4o",
        "status": 200, "error_class": None, "stream": False, "prompt_tokens": 8,
        "cached_tokens": 0, "cache_write_tokens": 0, "completion_tokens": 5,
        "reasoning_tokens": 0, "cost_micro_usd": 70, "latency_ms": 12.5, "ttft_ms": None,
        "attempts": 1, "attempts_detail": "[]", "fell_back": False, "resumed": False,
        "partial_stream": False,
    }  # fmt: skip


def test_an_old_ledger_and_an_old_spool_are_migrated_not_lost(
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    tmp_path: Path,
    logs_dir: Path,
) -> None:
    from sqlalchemy import create_engine

    from gateway.accounting.tables import metadata

    db = tmp_path / "ledger.sqlite"
    engine = create_engine(f"sqlite:///{db}")
    metadata.create_all(engine)
    engine.dispose()
    with sqlite3.connect(db) as conn:  # back to schema 1, as an old gateway left it
        for column in ("cache_saved_micro_usd", "cache_hit", "client_request_id", "resumed_by",
                       "dropped", "trace_id", "ingress", "usage_estimated", "drill"):  # fmt: skip
            conn.execute(f"ALTER TABLE spillover_ledger DROP COLUMN {column}")
        conn.execute("INSERT INTO spillover_schema (version) VALUES (1)")
        row = _old_row("old-in-db")
        conn.execute(
            f"INSERT INTO spillover_ledger ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            list(row.values()),
        )
    (tmp_path / "spool.jsonl").write_text(json.dumps(_old_row("old-in-spool")) + "\n")
    config = gateway_config(
        openai_upstream.port, anthropic_upstream.port, extra=_ledger(f"sqlite:///{db}", tmp_path)
    )
    proc = start_gateway(config, logs_dir, name="ledger-migrate")
    try:
        chat = {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
        reply = httpx.post(proc.url + "/v1/chat/completions", json=chat, headers=AUTH)
        assert reply.status_code == 200
        rows = _rows(db, 3)
    finally:
        proc.stop()
    assert sorted(r["uid"] for r in rows if r["uid"].startswith("old-")) == [
        "old-in-db", "old-in-spool",
    ]  # fmt: skip
    assert [bool(r["usage_estimated"]) for r in rows] == [False] * 3
    assert [r["ingress"] for r in rows] == ["openai"] * 3  # rows from before the column too
    with sqlite3.connect(db) as conn:
        versions = conn.execute("SELECT version FROM spillover_schema").fetchall()
        assert versions == [(SCHEMA_VERSION,)]
    assert not (tmp_path / "spool.jsonl").exists()


def test_a_full_journal_refuses_new_requests_rather_than_answer_them_unbilled(
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    tmp_path: Path,
    logs_dir: Path,
) -> None:
    missing = tmp_path / "not-yet"
    db = missing / "ledger.sqlite"
    journal = tmp_path / "journal"
    config = failover_config(openai_upstream.port, anthropic_upstream.port) + (
        f"ledger: {{url: 'sqlite:///{db}', flush_ms: 50, journal_dir: '{journal}', "
        "journal_max_bytes: 1048576, queue_size: 10}\n"
    )
    proc = start_gateway(config, logs_dir, name="ledger-full")
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    answered = 0
    try:
        with httpx.Client(headers=AUTH, timeout=10) as client:
            for _ in range(5000):
                reply = client.post(proc.url + "/v1/chat/completions", json=body)
                if reply.status_code != 200:
                    break
                answered += 1
            assert reply.status_code == 503, "the journal never filled"
            assert reply.json()["error"]["code"] == "ledger_unavailable"
            assert int(reply.headers["retry-after"]) >= 1
            ready = client.get(proc.url + "/health/ready")
            assert ready.status_code == 503
            detail = client.get(
                proc.url + "/admin/readiness", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            )
            assert "the ledger can keep no more rows" in detail.json()["problems"]
            missing.mkdir()  # the database is back: the journal drains, requests flow again
            deadline = time.monotonic() + 30
            while client.get(proc.url + "/health/ready").status_code != 200:
                assert time.monotonic() < deadline, "the journal did not drain"
                time.sleep(0.1)
            assert client.post(proc.url + "/v1/chat/completions", json=body).status_code == 200
            answered += 1
        # The refused requests have rows too (kept in memory while the journal was full), so
        # wait for the served ones: `answered` rows of status 200, no more, no fewer.
        deadline = time.monotonic() + 30
        while True:
            rows = _rows(db, answered, timeout=30)
            served = [r for r in rows if r["status"] == 200]
            if len(served) >= answered or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(served) == answered
        assert {r["status"] for r in rows} <= {200, 503}
        assert "spillover_ledger_rows_lost 0.0" in httpx.get(proc.url + "/metrics").text
    finally:
        proc.stop()
