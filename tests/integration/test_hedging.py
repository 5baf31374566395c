"""Hedged requests: a slow first target gets company after the hedge delay; the first answer
wins, the other attempt is cancelled, and a budget caps how often this happens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.processes import GATEWAY_KEY, MockUpstream, Proc, failover_config, start_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture
def hedging(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, logs_dir: Path
) -> Iterator[Proc]:
    policy = "hedge: {delay_ms: 150, budget_ratio: 0.1, budget_min: 1, budget_window_s: 60}\n"
    proc = start_gateway(
        failover_config(openai_upstream.port, anthropic_upstream.port, policy),
        logs_dir,
        name="hedging",
    )
    yield proc
    proc.stop()


@pytest.mark.parametrize("stream", [False, True])
def test_slow_primary_is_hedged_and_the_fallback_wins(
    hedging: Proc,
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    stream: bool,
) -> None:
    openai_upstream.configure(latency_ms=1500)
    client = openai.OpenAI(base_url=hedging.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model="chat", max_tokens=3, stream=stream, messages=[{"role": "user", "content": "x"}]
    )
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content or ""
    elapsed = time.monotonic() - started
    assert text.split() == ["Hello", "tok1", "tok2"]
    assert raw.headers["x-spillover-provider"] == "claude"
    assert raw.headers["x-spillover-attempts"] == "2"
    assert 0.15 <= elapsed < 1.0
    # Both upstreams were really asked: both attempts are metered as they happened.
    assert openai_upstream.count("/v1/chat/completions") == 1
    assert anthropic_upstream.count("/v1/messages") == 1
    metrics = httpx.get(hedging.url + "/metrics").text
    assert 'spillover_hedges_total{outcome="won",route="chat"} 1.0' in metrics


def test_fast_primary_is_not_hedged_and_the_budget_caps_hedges(
    hedging: Proc, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> None:
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    body = {"model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]}
    with httpx.Client(base_url=hedging.url, headers=headers, timeout=10) as client:
        for _ in range(5):
            assert (
                client.post("/v1/chat/completions", json=body).headers["x-spillover-provider"]
                == "primary"
            )
        assert anthropic_upstream.count("/v1/messages") == 0
        openai_upstream.configure(latency_ms=300)
        providers = [
            client.post("/v1/chat/completions", json=body).headers["x-spillover-provider"]
            for _ in range(6)
        ]
    # 10% of recent requests (at least one) may be hedged: 1 of these 11.
    assert providers.count("claude") == 1, providers
    metrics = httpx.get(hedging.url + "/metrics").text
    assert 'spillover_hedges_total{outcome="no_budget",route="chat"} 5.0' in metrics
