"""Failover under real faults: breakers, Retry-After cool-downs and deadlines, through the
HTTP surface with mock upstreams as processes."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.processes import (
    GATEWAY_KEY,
    MockUpstream,
    Proc,
    counts,
    failover_config,
    start_gateway,
)

pytestmark = pytest.mark.e2e

ROUTE_POLICY = """
breaker: {base_ejection_s: 1.0, max_ejection_s: 2.0}
fail_over_when: {consecutive_failures: 5, error_rate: 0.5, min_requests: 10, window_s: 10}
retry: {max_attempts: 2, budget_min_retries: 50}
latency_budget_ms: 2000
"""


@pytest.fixture
def policy_gateway(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, logs_dir: Path
) -> Iterator[Proc]:
    proc = start_gateway(
        failover_config(openai_upstream.port, anthropic_upstream.port, ROUTE_POLICY),
        logs_dir,
        name="policy-gateway",
    )
    yield proc
    proc.stop()


def _ask(client: httpx.Client) -> httpx.Response:
    return client.post(
        "/v1/chat/completions",
        json={"model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]},
    )


def test_primary_down_breaker_opens_fallback_serves_then_primary_returns(
    policy_gateway: Proc, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> None:
    openai_upstream.configure(error_rate=1, error_status=503, retry_after_s=0)
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    with httpx.Client(base_url=policy_gateway.url, headers=headers, timeout=10) as client:
        # Sequentially first, so the breaker's threshold is visible exactly.
        started = time.monotonic()
        first = _ask(client)
        failover_s = time.monotonic() - started
        assert first.status_code == 200 and first.headers["x-spillover-provider"] == "claude"
        for _ in range(9):
            assert _ask(client).status_code == 200
        assert counts(openai_upstream).get("/v1/chat/completions", 0) == 5

    async def burst() -> list[int]:
        async with httpx.AsyncClient(
            base_url=policy_gateway.url, headers=headers, timeout=10
        ) as aclient:
            sem = asyncio.Semaphore(16)

            async def one() -> int:
                async with sem:
                    response = await aclient.post(
                        "/v1/chat/completions",
                        json={
                            "model": "chat",
                            "max_tokens": 2,
                            "messages": [{"role": "user", "content": "x"}],
                        },
                    )
                    return response.status_code

            return await asyncio.gather(*(one() for _ in range(990)))

    burst_started = time.monotonic()
    statuses = asyncio.run(burst())
    burst_s = time.monotonic() - burst_started
    ok = statuses.count(200) + 10
    assert ok / 1000 >= 0.999, f"{1000 - ok} of 1000 failed"
    # While open, only the half-open probes (one per ejection period, ≥ 1 s) reach it.
    probes = counts(openai_upstream).get("/v1/chat/completions", 0) - 5
    assert probes <= burst_s / 1.0 + 1

    openai_upstream.configure(error_rate=0)
    recovered_at = time.monotonic()
    with httpx.Client(base_url=policy_gateway.url, headers=headers, timeout=10) as client:
        while time.monotonic() - recovered_at < 5:
            if _ask(client).headers["x-spillover-provider"] == "primary":
                break
            time.sleep(0.05)
    back_after = time.monotonic() - recovered_at
    assert back_after <= 2.0 + 0.3  # within one (max) ejection period
    print(
        f"\nfailover: first request after the primary went hard-down answered by the "
        f"fallback in {failover_s * 1000:.1f} ms; client-visible errors: {1000 - ok}; "
        f"burst {990 / burst_s:.0f} req/s; primary back {back_after:.2f} s after recovery"
    )


def test_retry_after_storm_is_honoured(
    policy_gateway: Proc, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> None:
    openai_upstream.configure(error_rate=1, error_status=429, retry_after_s=2)
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    sent = 0
    with httpx.Client(base_url=policy_gateway.url, headers=headers, timeout=10) as client:
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            assert _ask(client).status_code == 200
            sent += 1
            time.sleep(0.01)
    hits = [r["t"] for r in openai_upstream.received()]
    assert len(hits) >= 2
    gaps = [b - a for a, b in itertools.pairwise(hits)]
    assert min(gaps) >= 2.0 - 0.1, gaps
    attempts = len(hits) + counts(anthropic_upstream).get("/v1/messages", 0)
    assert attempts / sent <= 1.1, (attempts, sent)


def test_hung_primary_is_cut_at_its_share_of_the_budget(
    policy_gateway: Proc, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> None:
    openai_upstream.configure(hang_rate=1)
    client = openai.OpenAI(base_url=policy_gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    started = time.monotonic()
    reply = client.chat.completions.with_raw_response.create(
        model="chat", max_tokens=2, messages=[{"role": "user", "content": "x"}]
    )
    elapsed = time.monotonic() - started
    assert reply.headers["x-spillover-provider"] == "claude"
    # Two targets share the 2 s budget: the hung attempt ends at ~1 s, the fallback answers.
    assert 1.0 <= elapsed <= 1.0 + 0.1 + 0.2, elapsed
    time.sleep(0.3)
    assert counts(openai_upstream).get("hangs_released") == 1  # the socket was closed


def test_no_target_can_answer_in_time_is_504_before_the_deadline(
    policy_gateway: Proc, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> None:
    openai_upstream.configure(hang_rate=1)
    anthropic_upstream.configure(hang_rate=1)
    started = time.monotonic()
    response = httpx.post(
        policy_gateway.url + "/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": f"Bearer {GATEWAY_KEY}", "x-spillover-budget-ms": "600"},
        timeout=10,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    # Within the budget, not the 10 s the hung upstreams would take; the slack is for a busy
    # 2-core machine (a CI run measured 0.73 s).
    assert elapsed <= 0.6 + 0.3
    assert [a["provider"] for a in response.json()["error"]["attempts"]] == ["primary", "claude"]


def test_single_target_route_fails_fast_while_open(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, logs_dir: Path
) -> None:
    config = failover_config(openai_upstream.port, anthropic_upstream.port).replace(
        "      - {provider: claude, model: claude-sonnet-4-5}\n", ""
    )
    config = config.replace(
        "routes:\n  chat:\n",
        "routes:\n  chat:\n    breaker: {base_ejection_s: 30}\n    retry: {max_attempts: 1}\n",
    )
    proc = start_gateway(config, logs_dir, name="single-target")
    try:
        openai_upstream.configure(error_rate=1, error_status=500)
        headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
        with httpx.Client(base_url=proc.url, headers=headers, timeout=10) as client:
            statuses = [_ask(client).status_code for _ in range(20)]
            assert statuses[:5] == [502] * 5
            assert set(statuses[5:]) == {503}  # the circuit is open: fail fast
            last = _ask(client)
            assert 25 <= int(last.headers["retry-after"]) <= 30
            assert last.json()["error"]["attempts"][0]["error"] == "breaker_open"
        assert counts(openai_upstream).get("/v1/chat/completions", 0) == 5
    finally:
        proc.stop()


def test_exhausted_headroom_steers_away_before_any_429(
    policy_gateway: Proc, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> None:
    # The primary still answers, but says it has no requests left for 1.5 s.
    openai_upstream.configure(ratelimit_remaining=0, ratelimit_reset_s=1.5)
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    with httpx.Client(base_url=policy_gateway.url, headers=headers, timeout=10) as client:
        assert _ask(client).headers["x-spillover-provider"] == "primary"
        started = time.monotonic()
        providers = []
        while time.monotonic() - started < 1.2:
            providers.append(_ask(client).headers["x-spillover-provider"])
            time.sleep(0.02)
        assert set(providers) == {"claude"}
        openai_upstream.configure(ratelimit_remaining=-1)
        time.sleep(0.5)
        assert _ask(client).headers["x-spillover-provider"] == "primary"
    assert openai_upstream.count("/v1/chat/completions") == 2
    metrics = httpx.get(policy_gateway.url + "/metrics").text
    assert 'reason="no_headroom",route="chat"}' in metrics


def test_context_too_long_goes_to_the_larger_window(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, logs_dir: Path
) -> None:
    config = failover_config(
        openai_upstream.port,
        anthropic_upstream.port,
        "on_context_too_long: {provider: claude, model: claude-1m-context}\n",
    )
    proc = start_gateway(config, logs_dir, name="context")
    try:
        openai_upstream.configure(
            error_rate=1, error_status=400, error_code="context_length_exceeded"
        )
        client = openai.OpenAI(base_url=proc.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="chat", max_tokens=2, messages=[{"role": "user", "content": "long"}]
        )
        assert raw.headers["x-spillover-provider"] == "claude"
        assert raw.headers["x-spillover-model"] == "claude-1m-context"
        assert anthropic_upstream.received()[-1]["body"]["model"] == "claude-1m-context"
        # Another kind of bad request is not "too long": no detour, the client's 400.
        openai_upstream.configure(error_code="")
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "x"}]
            )
    finally:
        proc.stop()
