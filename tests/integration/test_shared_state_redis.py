"""Routing state shared through Redis by two gateway processes, and Redis going away (and
coming back) in the middle of traffic without a single failed request."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from gateway.state.limits import Check
from gateway.state.limits_redis import RedisLimiter
from gateway.state.redis import RedisState
from gateway.state.shared import SharedRedis
from gateway.state.spend import Bucket
from gateway.state.spend_redis import RedisSpendCounters
from gateway.state.windows import AttemptSample
from policies.limits import Rate
from policies.route import Breaker, FailOverWhen
from policies.schema import StateConfig
from tests.support.processes import (
    GATEWAY_KEY,
    MockUpstream,
    Proc,
    counts,
    failover_config,
    free_port,
    start_gateway,
)
from tests.support.redis import RedisServer, real_redis_url

pytestmark = pytest.mark.e2e


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    yield server
    server.stop()


async def test_breaker_transitions_are_atomic_on_the_real_redis() -> None:
    config = StateConfig(
        backend="redis",
        url=real_redis_url(),
        key_prefix=f"spillover-test-{os.getpid()}:",
        timeout_ms=500,
    )
    rules = FailOverWhen(consecutive_failures=5, min_requests=100)
    breaker = Breaker(base_ejection_s=10, half_open_probes=1)
    clients = [SharedRedis(config), SharedRedis(config)]  # two gateway processes
    replicas = [RedisState(client) for client in clients]
    try:
        await replicas[0].reset()
        now = time.time()
        # Ten failures recorded concurrently by two replicas: counted once each, and the
        # breaker opens exactly once (one ejection), whoever sees the fifth.
        await asyncio.gather(
            *(
                replicas[i % 2].record("p/m", AttemptSample(ok=False), now, rules, breaker)
                for i in range(10)
            )
        )
        views = await replicas[1].views(["p/m"], now, 30)
        assert views["p/m"].breaker.phase == "open"
        assert views["p/m"].breaker.ejections == 1
        # Half-open lets exactly one probe through across both replicas.
        later = now + 11
        verdicts = await asyncio.gather(*(r.admit("p/m", later, breaker) for r in replicas * 3))
        assert sorted(verdicts) == ["deny"] * 5 + ["probe"]
        await replicas[0].cool_down("p/x", now + 5)
        await replicas[0].cool_down("p/x", now + 2)  # a shorter wait never shortens it
        assert (await replicas[1].views(["p/x"], now, 30))["p/x"].cooldown_until == pytest.approx(
            now + 5
        )
    finally:
        await replicas[0].reset()
        for client in clients:
            await client.close()


def test_two_gateways_share_breakers_and_survive_redis_going_away(
    redis_server: RedisServer,
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    logs_dir: Path,
) -> None:
    config = failover_config(
        openai_upstream.port,
        anthropic_upstream.port,
        "breaker: {base_ejection_s: 30}\nretry: {max_attempts: 2}\n",
        state=f"state: {{backend: redis, url: '{redis_server.url}', timeout_ms: 100}}",
    )
    gateways: list[Proc] = [start_gateway(config, logs_dir, name=f"shared-{i}") for i in range(2)]
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    body = {"model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]}
    try:
        openai_upstream.configure(error_rate=1, error_status=500)
        for _ in range(5):  # five failures through the first gateway open the breaker
            reply = httpx.post(gateways[0].url + "/v1/chat/completions", json=body, headers=headers)
            assert reply.headers["x-spillover-provider"] == "claude"
        assert counts(openai_upstream)["/v1/chat/completions"] == 5
        for _ in range(10):  # … and the second gateway honours it
            reply = httpx.post(gateways[1].url + "/v1/chat/completions", json=body, headers=headers)
            assert reply.status_code == 200
            assert reply.headers["x-spillover-provider"] == "claude"
        assert counts(openai_upstream)["/v1/chat/completions"] == 5

        redis_server.stop()

        async def traffic(n: int) -> list[int]:
            async with httpx.AsyncClient(headers=headers, timeout=10) as client:
                replies = await asyncio.gather(
                    *(
                        client.post(gateways[i % 2].url + "/v1/chat/completions", json=body)
                        for i in range(n)
                    )
                )
            return [r.status_code for r in replies]

        assert set(asyncio.run(traffic(60))) == {200}
        for proc in gateways:
            metrics = httpx.get(proc.url + "/metrics").text
            assert "spillover_state_backend_up 0.0" in metrics
            # Routing kept using what it knew: the open breaker still holds locally.
        assert counts(openai_upstream)["/v1/chat/completions"] == 5

        redis_server.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert set(asyncio.run(traffic(4))) == {200}
            if all(
                "spillover_state_backend_up 1.0" in httpx.get(p.url + "/metrics").text
                for p in gateways
            ):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the gateways did not go back to Redis after it returned")
        # What the replicas learnt while Redis was away was pushed back.
        views = httpx.get(gateways[1].url + "/health/live")
        assert views.status_code == 200
        assert redis.Redis(port=redis_server.port).get("spillover:breaker:primary/gpt-4o")
    finally:
        for proc in gateways:
            proc.stop()
            assert "Traceback" not in proc.output(), proc.output()


def test_gateway_starts_and_serves_while_redis_is_down(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, logs_dir: Path
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    config = failover_config(
        openai_upstream.port,
        anthropic_upstream.port,
        state=f"state: {{backend: redis, url: '{dead}'}}",
    )
    proc = start_gateway(config, logs_dir, name="redis-down-at-start")
    try:
        reply = httpx.post(
            proc.url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
            json={"model": "chat", "messages": [{"role": "user", "content": "x"}]},
        )
        assert reply.status_code == 200
        assert "spillover_state_backend_up 0.0" in httpx.get(proc.url + "/metrics").text
        # One line per change of state, for routing state and for limits.
        assert proc.output().count("routing on local state until it returns") == 1
        assert proc.output().count("limits fall back to") == 1
    finally:
        proc.stop()


async def test_a_reset_forgets_one_target_or_all_but_never_limits_or_budgets() -> None:
    """Resetting the routing state (admin API, console) closes breakers; the limit and budget
    counters share the key prefix and must survive it, or a reset would refill a budget."""
    prefix = f"spillover-test-reset-{os.getpid()}:"
    shared = SharedRedis(
        StateConfig(backend="redis", url=real_redis_url(), key_prefix=prefix, timeout_ms=500)
    )
    state, limiter, spend = RedisState(shared), RedisLimiter(shared), RedisSpendCounters(shared)
    rules = FailOverWhen(consecutive_failures=1, min_requests=100)
    breaker = Breaker(base_ejection_s=300)
    try:
        now = time.time()
        for key in ("p/a", "p/b"):
            await state.record(key, AttemptSample(ok=False), now, rules, breaker)
        await limiter.acquire([Check("key:app:rpm", Rate(60, 5), 3)])
        bucket = Bucket("key:app:day:2026-12-01", 10_000_000, True, 3600.0, "key app daily")
        await spend.reserve([bucket], 500)
        await spend.settle([bucket], 500, 700)

        await state.reset("p/a")
        views = await state.views(["p/a", "p/b"], now, 30)
        assert (views["p/a"].breaker.phase, views["p/b"].breaker.phase) == ("closed", "open")
        await state.reset()
        assert (await state.views(["p/b"], now, 30))["p/b"].breaker.phase == "closed"

        assert (await limiter.peek(["key:app:rpm"]))[0] > now
        assert await spend.peek([bucket.name]) == [(700, 0)]
    finally:
        client = redis.Redis.from_url(real_redis_url())
        names = list(client.scan_iter(match=prefix + "*"))
        if names:
            client.delete(*names)
        await shared.close()
