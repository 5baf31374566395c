"""Money under load and faults: three replicas cannot overspend a hard budget by more than
one reservation, and 10,000 requests with upstream faults, bad requests and clients walking
away end in exactly 10,000 ledger rows whose total equals the Redis spend counter and the
Prometheus cost counter to the micro-dollar."""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.processes import GATEWAY_KEY, MockUpstream, start_gateway
from tests.support.redis import RedisServer

pytestmark = pytest.mark.e2e


def _config(
    db: Path, tmp: Path, redis_url: str, openai_port: int, anthropic_port: int, budget_usd: float
) -> str:
    return textwrap.dedent(f"""\
        state: {{backend: redis, url: "{redis_url}", timeout_ms: 200}}
        ledger: {{url: "sqlite:///{db}", flush_ms: 50, spool_path: "{tmp}/{db.stem}.spool"}}
        providers:
          primary: {{kind: openai, api_base: "http://127.0.0.1:{openai_port}/v1"}}
          claude: {{kind: anthropic, api_base: "http://127.0.0.1:{anthropic_port}"}}
        routes:
          gpt-4o:
            targets: [{{provider: primary, model: gpt-4o}},
                      {{provider: claude, model: claude-sonnet-4-5}}]
            breaker: {{base_ejection_s: 0.2, max_ejection_s: 0.5}}
        keys:
          - {{name: payer, team: money, key: "${{TEST_GATEWAY_KEY}}",
              budget: {{daily_usd: {budget_usd}, mode: hard}}}}
        """)


def _ledger(db: Path) -> list[tuple[str, int | None, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT uid, cost_micro_usd, status FROM spillover_ledger").fetchall()


def _wait_rows(
    dbs: list[Path], expected: int, timeout: float = 30
) -> list[tuple[str, int | None, int]]:
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for db in dbs if db.exists() for r in _ledger(db)]
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def _redis_spent(server: RedisServer) -> int:
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    value = redis.Redis(port=server.port).hget(f"spillover:budget:key:payer:day:{day}", "spent")
    return int(value or 0)


def test_three_replicas_overspend_a_hard_budget_by_at_most_one_reservation(
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    tmp_path: Path,
    logs_dir: Path,
) -> None:
    server = RedisServer(tmp_path)
    dbs = [tmp_path / f"replica{i}.sqlite" for i in range(3)]
    replicas = [
        start_gateway(
            _config(db, tmp_path, server.url, openai_upstream.port, anthropic_upstream.port, 0.001),
            logs_dir,
            name=f"budget-{i}",
        )
        for i, db in enumerate(dbs)
    ]
    openai_upstream.configure(latency_ms=50)  # many requests in flight at once
    try:

        async def burst() -> list[int]:
            async with httpx.AsyncClient(timeout=10) as client:
                replies = await asyncio.gather(
                    *(
                        client.post(
                            replicas[i % 3].url + "/v1/chat/completions",
                            json={
                                "model": "gpt-4o",
                                "max_tokens": 5,
                                "messages": [{"role": "user", "content": "hi"}],
                            },
                            headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                        )
                        for i in range(90)
                    )
                )
            return [r.status_code for r in replies]

        statuses = asyncio.run(burst())
        assert set(statuses) == {200, 429}
        # In-flight reservations hold the rest back; once they settle, sequential requests
        # may use what is left, until the budget is spent.
        sent = len(statuses)
        for i in range(40):
            sent += 1
            reply = httpx.post(
                replicas[i % 3].url + "/v1/chat/completions",
                json={
                    "model": "gpt-4o",
                    "max_tokens": 5,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                timeout=10,
            )
            if reply.status_code == 429:
                assert reply.json()["error"]["code"] == "budget_exceeded"
                break
        rows = _wait_rows(dbs, sent)
        spent = sum(cost or 0 for _, cost, _ in rows)
        # The reservation is the dearest target's price: claude-sonnet-4-5 at $3/M in and
        # $15/M out for 8 + 5 tokens = 99 µ$, plus one for rounding up.
        reservation = 100
        assert 1_000 <= spent <= 1_000 + reservation, spent
        assert spent == _redis_spent(server)
    finally:
        for proc in replicas:
            proc.stop()
        server.stop()


def test_ten_thousand_requests_with_faults_end_in_exact_money(
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    tmp_path: Path,
    logs_dir: Path,
) -> None:
    server = RedisServer(tmp_path)
    db = tmp_path / "ledger.sqlite"
    proc = start_gateway(
        _config(db, tmp_path, server.url, openai_upstream.port, anthropic_upstream.port, 1_000.0),
        logs_dir,
        name="exact",
    )
    openai_upstream.configure(
        error_rate=0.1, error_status=503, retry_after_s=0, seed=7, output_tokens=2_000
    )
    anthropic_upstream.configure(output_tokens=2_000)
    total = 10_000
    rng = random.Random(11)
    try:

        async def run() -> None:
            limits = httpx.Limits(max_connections=32)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                sem = asyncio.Semaphore(32)

                async def one(i: int) -> None:
                    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
                    body: dict[str, object] = {
                        "model": "gpt-4o",
                        "max_tokens": rng.choice([3, 5, 8]),
                        "messages": [{"role": "user", "content": "hi " * rng.randint(1, 20)}],
                    }
                    kind = rng.random()
                    async with sem:
                        if kind < 0.02:  # the client walks away mid-stream
                            body.update(stream=True, max_tokens=2_000)
                            async with client.stream(
                                "POST",
                                proc.url + "/v1/chat/completions",
                                json=body,
                                headers=headers,
                            ) as r:
                                async for _ in r.aiter_bytes():
                                    break
                        elif kind < 0.04:  # a bad request
                            body["temperature"] = 7
                            await client.post(
                                proc.url + "/v1/chat/completions", json=body, headers=headers
                            )
                        else:
                            body["stream"] = kind < 0.3
                            await client.post(
                                proc.url + "/v1/chat/completions", json=body, headers=headers
                            )

                await asyncio.gather(*(one(i) for i in range(total)))

        asyncio.run(run())
        rows = _wait_rows([db], total, timeout=60)
        time.sleep(0.5)
        rows = _ledger(db)
        assert len(rows) == total
        assert len({uid for uid, _, _ in rows}) == total
        statuses = {status for _, _, status in rows}
        assert {200, 400, 499} <= statuses
        ledger_total = sum(cost or 0 for _, cost, _ in rows)
        metrics = httpx.get(proc.url + "/metrics").text
        prometheus = sum(
            float(v) for v in re.findall(r"^spillover_cost_usd_total\{.*\} (\S+)$", metrics, re.M)
        )
        print(
            f"\n10,000 requests: ledger {ledger_total} µ$, redis {_redis_spent(server)} µ$, "
            f"prometheus {prometheus:.6f} $; statuses {sorted(statuses)}"
        )
        assert ledger_total == _redis_spent(server) == round(prometheus * 1_000_000) > 0
    finally:
        proc.stop()
        server.stop()
