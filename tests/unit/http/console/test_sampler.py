"""The console's series from the gateway's own registry: rates and shares over the last
interval, latency quantiles the way Prometheus computes them, no point before two samples."""

from __future__ import annotations

import pytest

from gateway.http.console.sampler import Sampler, quantile
from gateway.metrics import GatewayMetrics


def test_quantiles_interpolate_inside_the_bucket_like_histogram_quantile() -> None:
    cumulative = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert quantile(0.5, cumulative) == pytest.approx(0.1)
    assert quantile(0.7, cumulative) == pytest.approx(0.3)
    assert quantile(0.99, cumulative) == pytest.approx(0.95)
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.99, {0.1: 1.0, float("inf"): 2.0}) == pytest.approx(0.1)


def test_a_point_is_what_happened_between_two_samples() -> None:
    metrics = GatewayMetrics()
    sampler = Sampler(metrics, every_s=1)
    sampler.tick(100.0)
    assert list(sampler.times) == [] and sampler.latest == {}
    ok = metrics.requests.labels("gpt-4o", "chat", "openai", "200")
    failed = metrics.requests.labels("gpt-4o", "chat", "openai", "503")
    ok.inc(18)
    failed.inc(2)
    metrics.fallbacks.labels("gpt-4o", "upstream_error").inc(5)
    for seconds in [0.02] * 10 + [0.4] * 9 + [2.0]:
        metrics.request_seconds.labels("gpt-4o", "chat", "openai").observe(seconds)
    metrics.cost_usd.labels("ops", "gpt-4o", "primary", "gpt-4o").inc(0.01)
    sampler.tick(110.0)
    point = sampler.latest
    assert point["rps"] == pytest.approx(2.0)
    assert point["error_rate"] == pytest.approx(0.1)
    assert point["fallback_share"] == pytest.approx(0.25)
    assert point["spend_usd_per_h"] == pytest.approx(3.6)
    assert point["latency_p50_ms"] is not None and point["latency_p50_ms"] <= 25
    assert point["latency_p99_ms"] is not None and point["latency_p99_ms"] >= 1000
    # The next interval saw nothing: its point has no rate and no shares, while the summary
    # covers the whole last minute.
    sampler.tick(120.0)
    times, rps, errors = sampler.data(["rps", "error_rate"])
    assert times == [110.0, 120.0] and rps == [pytest.approx(2.0), 0.0]
    assert errors == [pytest.approx(0.1), None]
    assert sampler.latest["rps"] == pytest.approx(1.0)
    assert sampler.latest["error_rate"] == pytest.approx(0.1)
    # Past a minute, the summary forgets.
    sampler.tick(181.0)
    assert sampler.latest["rps"] == 0 and sampler.latest["error_rate"] is None
