"""The self-hosted pool end to end against simulated vLLM replicas (real processes over HTTP):
spill-over from a failing hosted provider, readiness gating, KV-aware admission and
shedding, a replica killed mid-run, prefix affinity, discovery and the router mode."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.pool import Replica, metric, pool_config, start_sim, wait_ready
from tests.support.processes import (
    ADMIN_KEY,
    GATEWAY_KEY,
    ROOT,
    MockUpstream,
    Proc,
    start_gateway,
)

pytestmark = pytest.mark.e2e
SYSTEM = "You are the support assistant of a large bank; answer briefly and kindly. " * 12


def _chat(
    proc: Proc, key: str = GATEWAY_KEY, headers: dict[str, str] | None = None, **extra: object
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **(headers or {})}
    body = {"model": "chat", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    body.update(extra)
    return httpx.post(proc.url + "/v1/chat/completions", json=body, headers=headers, timeout=30)


@pytest.fixture
def two_sims(logs_dir: Path) -> Iterator[list[Replica]]:
    sims = [start_sim(logs_dir, f"sim-{i}") for i in range(2)]
    yield sims
    for sim in sims:
        sim.stop()


def test_the_pool_answers_when_the_hosted_provider_fails(
    openai_upstream: MockUpstream, two_sims: list[Replica], tmp_path: Path, logs_dir: Path
) -> None:
    openai_upstream.configure(error_rate=1.0, error_status=503)
    ledger = tmp_path / "ledger.sqlite"
    config = pool_config(
        openai_upstream.port,
        [s.url for s in two_sims],
        ledger=f"ledger: {{url: 'sqlite:///{ledger}', flush_ms: 20}}",
    )
    gateway = start_gateway(config, logs_dir, name="pool-fallback")
    try:
        for sim in two_sims:
            wait_ready(gateway, sim.url)
        # A key with a budget, on a cold pool: its reservation prices the pool at capacity,
        # so it is admitted from the first request (a quiet pool once priced it in millions).
        budgeted = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-budgeted", max_retries=0)
        raw = budgeted.chat.completions.with_raw_response.create(
            model="chat", max_tokens=6, messages=[{"role": "user", "content": "hello"}]
        )
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
        answer = raw.parse()
        assert raw.headers["x-spillover-provider"] == "local"
        assert raw.headers["x-spillover-attempts"] == "2"
        assert answer.model == "tiny-llama" and answer.usage is not None
        assert answer.usage.completion_tokens == 6
        stream = client.chat.completions.create(
            model="chat",
            max_tokens=5,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "hello"}],
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert len(text.split()) == 5 and chunks[-1].usage is not None
        # Hosted was tried first, then cooled down after its 503 and skipped.
        assert openai_upstream.count("/v1/chat/completions") == 1
        time.sleep(0.5)
    finally:
        gateway.stop()
    rows = (
        sqlite3.connect(ledger)
        .execute(
            "SELECT provider, model, status, prompt_tokens, completion_tokens, cost_micro_usd "
            "FROM spillover_ledger ORDER BY ts"
        )
        .fetchall()
    )
    assert [(r[0], r[1], r[2]) for r in rows] == [("local", "tiny-llama", 200)] * 2
    # Self-hosted: a replica's $3.50/h over the 7M tokens it sustains an hour, $0.50 per
    # million tokens, from the first request on: known, stable, and never a quiet pool's
    # idle hours charged to one request.
    for _, _, _, prompt, completion, cost in rows:
        assert cost == round((prompt + completion) * 0.5)
    # The hours nobody bought are the pool's idle cost, in the report: two replicas at
    # $3.50/h over the last hour are $7.00, less what the two requests paid.
    (tmp_path / "spillover.yaml").write_text(config)
    report = subprocess.run(
        [sys.executable, "-m", "gateway", "costs", "--config", str(tmp_path / "spillover.yaml"),
         "--by", "provider", "--since", "1h", "--format", "markdown"],
        capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "TEST_GATEWAY_KEY": GATEWAY_KEY, "TEST_ADMIN_KEY": "sk-x"},
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    billed = sum(r[5] for r in rows) / 1e6
    pools = report.stdout.split("| pool |", 1)[1]  # the second table: the pools'
    pool_row = next(line for line in pools.splitlines() if line.startswith("| local |"))
    assert pool_row.split(" | ")[1:6] == [
        "2", "1.00", "7.0000", f"{billed:,.4f}", f"{7 - billed:,.4f}",
    ]  # fmt: skip


def test_no_traffic_reaches_a_replica_before_its_warm_up(
    openai_upstream: MockUpstream, logs_dir: Path
) -> None:
    ready = start_sim(logs_dir, "sim-ready")
    # Loading until the test says it has loaded: no race with the gateway's own start-up.
    loading = start_sim(logs_dir, "sim-loading", "--load-s", "600", "--warmup-ms", "200")
    config = pool_config(
        openai_upstream.port,
        [ready.url, loading.url],
        hosted_first=False,
        pool_extra="warm_up: {prompt: 'Warm up, please.', max_tokens: 4}\n",
    )
    gateway = start_gateway(config, logs_dir, name="pool-warmup")
    try:
        wait_ready(gateway, ready.url)
        statuses = [_chat(gateway).status_code for _ in range(20)]
        assert statuses == [200] * 20
        assert metric(gateway, "spillover_pool_replica_state", replica=loading.url,
                       state="starting") == 1  # fmt: skip
        assert loading.completed() == 0  # still loading: not one request reached it
        assert metric(gateway, "spillover_pool_warm_replicas", pool="local") == 1
        assert metric(gateway, "spillover_pool_min_warm_replicas", pool="local") == 1
        loading.configure(load_s=0)
        wait_ready(gateway, loading.url)
        assert loading.completed() == 1  # the warm-up request, and nothing before it
        assert metric(gateway, "spillover_pool_warm_replicas", pool="local") == 2
        for _ in range(20):
            assert (
                _chat(gateway, messages=[{"role": "user", "content": f"q {_}"}]).status_code == 200
            )
        assert loading.completed() > 1  # in rotation now
    finally:
        gateway.stop()
        ready.stop()
        loading.stop()


def test_kv_pressure_sheds_sheddable_first_then_rejects_with_retry_after(
    openai_upstream: MockUpstream, logs_dir: Path
) -> None:
    # 16 blocks of 16 tokens: two long requests (their prompts and the output they will grow
    # by) take over 60% of the cache; steps are slow so they stay.
    sim = start_sim(logs_dir, "sim-small", "--kv-blocks", "16", "--block-size", "16",
                    "--max-model-len", "512", "--step-base-ms", "25")  # fmt: skip
    config = pool_config(
        openai_upstream.port,
        [sim.url],
        hosted_first=False,
        pool_extra="""\
            admission: {max_kv_usage: 0.6, sheddable_kv_usage: 0.3, when_full: reject,
                        long_context_tokens: 100000}
            """,
    )
    gateway = start_gateway(config, logs_dir, name="pool-shed")
    try:
        wait_ready(gateway, sim.url)
        long_prompt = [{"role": "user", "content": "tell me everything " * 12}]  # ~60 tokens

        async def hold() -> list[int]:
            async with httpx.AsyncClient(timeout=30) as client:
                replies = await asyncio.gather(*(
                    client.post(gateway.url + "/v1/chat/completions",
                                headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                                json={"model": "chat", "max_tokens": 60, "messages": long_prompt})
                    for _ in range(2)
                ))  # fmt: skip
                return [r.status_code for r in replies]

        async def probe() -> tuple[list[int], list[httpx.Response]]:
            holding = asyncio.create_task(hold())
            deadline = time.monotonic() + 10
            while sim.metrics().kv_usage < 0.6 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.4)  # the gateway's next scrape sees it too
            probes = [
                await asyncio.to_thread(_chat, gateway, "sk-batch-jobs"),
                await asyncio.to_thread(
                    _chat, gateway, headers={"x-spillover-priority": "sheddable"}
                ),
                await asyncio.to_thread(_chat, gateway),
            ]
            return await holding, probes

        held, (batch, lowered, standard) = asyncio.run(probe())
        assert held == [200, 200]
        for refused in (batch, lowered, standard):
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "upstream_unavailable"
            assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "shed" in batch.json()["error"]["message"]
        shed = {
            reason: metric(gateway, "spillover_pool_shed_total", reason=reason, priority=p)
            for reason, p in (("sheddable", "sheddable"), ("kv_full", "standard"))
        }
        assert shed == {"sheddable": 2, "kv_full": 1}
        # Room again once they finished — at the latest when the next scrape shows it.
        deadline = time.monotonic() + 3
        while (status := _chat(gateway).status_code) != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status == 200
    finally:
        gateway.stop()
        sim.stop()


def test_a_queued_request_waits_for_room_or_gets_503_at_its_deadline(
    openai_upstream: MockUpstream, logs_dir: Path
) -> None:
    # 32 blocks of 16 tokens; one ~150-token prompt takes over a quarter of the cache.
    sim = start_sim(logs_dir, "sim-queue", "--kv-blocks", "32", "--block-size", "16",
                    "--max-model-len", "512", "--step-base-ms", "20")  # fmt: skip
    config = pool_config(
        openai_upstream.port,
        [sim.url],
        hosted_first=False,
        pool_extra="""\
            admission: {max_kv_usage: 0.25, when_full: queue, queue: {max_size: 8, max_wait_ms: 600}}
            """,
    )
    gateway = start_gateway(config, logs_dir, name="pool-queue")
    try:
        wait_ready(gateway, sim.url)
        fill = [{"role": "user", "content": "fill the cache please, " * 26}]  # ~150 tokens

        async def scenario(hold_tokens: int) -> tuple[int, httpx.Response, float]:
            async with httpx.AsyncClient(timeout=30) as client:
                auth = {"Authorization": f"Bearer {GATEWAY_KEY}"}
                holder = asyncio.create_task(client.post(
                    gateway.url + "/v1/chat/completions", headers=auth,
                    json={"model": "chat", "max_tokens": hold_tokens, "messages": fill}))  # fmt: skip
                deadline = time.monotonic() + 10
                while sim.metrics().running < 1 and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                held_since = time.monotonic()
                queued = await client.post(
                    gateway.url + "/v1/chat/completions", headers=auth,
                    json={"model": "chat", "max_tokens": 4,
                          "messages": [{"role": "user", "content": "me next"}]},
                )  # fmt: skip
                waited = time.monotonic() - held_since
                return (await holder).status_code, queued, waited

        held, timed_out, waited = asyncio.run(scenario(hold_tokens=150))  # ~3 s of decode
        assert held == 200
        assert timed_out.status_code == 503 and "queue_timeout" in timed_out.text
        assert 0.5 <= waited < 1.5  # the queue's 600 ms, not a hang
        held, admitted, waited = asyncio.run(scenario(hold_tokens=12))  # done in ~0.25 s
        assert held == 200
        assert admitted.status_code == 200, admitted.text
        assert 0.15 < waited < 1.0  # it waited for the holder to finish, then went in
        assert metric(gateway, "spillover_pool_queue_wait_seconds_count", pool="local") >= 2
    finally:
        gateway.stop()
        sim.stop()


def test_a_replica_killed_mid_run_leaves_rotation_and_nothing_is_lost(
    openai_upstream: MockUpstream, two_sims: list[Replica], logs_dir: Path
) -> None:
    victim, survivor = two_sims
    for sim in two_sims:
        sim.configure(extra_step_ms=15)  # requests take ~0.3 s: some are in flight at the kill
    config = pool_config(
        openai_upstream.port,
        [s.url for s in two_sims],
        hosted_first=False,
        pool_extra="routing: {strategy: round_robin}\n",
    )
    gateway = start_gateway(config, logs_dir, name="pool-kill")
    try:
        for sim in two_sims:
            wait_ready(gateway, sim.url)

        async def load() -> list[int]:
            async with httpx.AsyncClient(timeout=20) as client:

                async def one(i: int) -> int:
                    await asyncio.sleep(i * 0.02)
                    reply = await client.post(
                        gateway.url + "/v1/chat/completions",
                        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                        json={"model": "chat", "max_tokens": 16,
                              "messages": [{"role": "user", "content": f"question {i}"}]},
                    )  # fmt: skip
                    return reply.status_code

                async def kill() -> None:
                    await asyncio.sleep(0.5)
                    assert victim.proc is not None
                    await asyncio.to_thread(victim.proc.process.kill)

                results = await asyncio.gather(*(one(i) for i in range(60)), kill())
                return [r for r in results if r is not None]

        started = time.monotonic()
        statuses = asyncio.run(load())
        assert statuses == [200] * 60
        assert time.monotonic() - started < 15  # nothing hung
        assert metric(gateway, "spillover_pool_replica_state", replica=victim.url,
                       state="unhealthy") == 1  # fmt: skip
        assert metric(gateway, "spillover_pool_warm_replicas", pool="local") == 1
        assert survivor.completed() > 30
        assert _chat(gateway).status_code == 200
    finally:
        gateway.stop()


def _prefix_run(gateway: Proc, users: int) -> None:
    for i in range(users):
        body = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"user {i}"}]
        assert _chat(gateway, messages=body, max_tokens=2).status_code == 200


def test_prefix_affinity_keeps_a_shared_prompt_where_its_cache_is(
    openai_upstream: MockUpstream, logs_dir: Path
) -> None:
    hit_ratio = {}
    for strategy in ("round_robin", "prefix_affinity"):
        sims = [start_sim(logs_dir, f"sim-{strategy}-{i}", "--block-size", "16") for i in range(3)]
        config = pool_config(
            openai_upstream.port,
            [s.url for s in sims],
            hosted_first=False,
            pool_extra=f"routing: {{strategy: {strategy}}}\n",
        )
        gateway = start_gateway(config, logs_dir, name=f"pool-{strategy}")
        try:
            for sim in sims:
                wait_ready(gateway, sim.url)
            _prefix_run(gateway, 30)
            snaps = [s.metrics() for s in sims]
            hits = sum(s.prefix_hits for s in snaps)
            queries = sum(s.prefix_queries for s in snaps)
            hit_ratio[strategy] = hits / queries
        finally:
            gateway.stop()
            for sim in sims:
                sim.stop()
    # Round robin pays the shared prefix once per replica; affinity once in all.
    assert hit_ratio["prefix_affinity"] > hit_ratio["round_robin"]
    assert hit_ratio["prefix_affinity"] > 0.8


def test_discovery_by_dns_and_the_router_mode(
    openai_upstream: MockUpstream, two_sims: list[Replica], logs_dir: Path
) -> None:
    behind, router = two_sims
    port = behind.url.rsplit(":", 1)[1]
    discovered = pool_config(openai_upstream.port, ["unused"], hosted_first=False).replace(
        'replicas: ["unused"]', f"discover: {{dns: 127.0.0.1, port: {port}, every_s: 0.2}}"
    )
    gateway = start_gateway(discovered, logs_dir, name="pool-discover")
    try:
        wait_ready(gateway, behind.url)
        assert _chat(gateway).status_code == 200
    finally:
        gateway.stop()
    # Router mode: the pool's router (here the second simulator) picks; the replicas are
    # still read for admission.
    routed = pool_config(
        openai_upstream.port, [behind.url], hosted_first=False,
        pool_extra=f"endpoint: {router.url}\n",
    )  # fmt: skip
    gateway = start_gateway(routed, logs_dir, name="pool-router")
    try:
        wait_ready(gateway, behind.url)
        before = (behind.completed(), router.completed())
        for _ in range(5):
            assert _chat(gateway).status_code == 200
        assert router.completed() - before[1] == 5
        assert behind.completed() == before[0]
    finally:
        gateway.stop()


def test_a_reload_keeps_a_warm_pool_serving(
    openai_upstream: MockUpstream, two_sims: list[Replica], logs_dir: Path
) -> None:
    # A long warm-up (~0.5 s): a pool that re-probed its replicas after the reload would
    # shed everything until they were warm again.
    config = "server: {reload_poll_s: 0}\n" + pool_config(
        openai_upstream.port,
        [s.url for s in two_sims],
        hosted_first=False,
        pool_extra="warm_up: {max_tokens: 200}\n",
    )
    gateway = start_gateway(config, logs_dir, name="pool-reload")
    try:
        for sim in two_sims:
            wait_ready(gateway, sim.url)
        path = next(logs_dir.glob(f"pool-reload-{gateway.url.rsplit(':', 1)[1]}.yaml"))
        path.write_text(config.replace("gpu_cost_per_hour: 3.5", "gpu_cost_per_hour: 4.0"))
        reply = httpx.post(
            gateway.url + "/admin/reload",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=10,
        )
        assert reply.json()["status"] == "reloaded"
        statuses = [_chat(gateway).status_code for _ in range(10)]
        assert statuses == [200] * 10  # no shedding while the new generation looks around
        assert metric(gateway, "spillover_pool_warm_replicas", pool="local") == 2
    finally:
        gateway.stop()
