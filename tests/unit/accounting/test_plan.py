"""Capacity planning arithmetic against hand-computed cases."""

from __future__ import annotations

import pytest

from gateway.accounting.capacity import Request, demand, size, weighted


def test_time_weighted_percentiles() -> None:
    p = weighted([(0, 50), (1, 45), (10, 5)])  # a level held for that many seconds
    assert (p.p50, p.p95, p.p99, p.max) == (0, 1, 10, 10)
    assert p.mean == pytest.approx(0.95)


def test_concurrency_and_kv_in_flight_come_from_overlaps() -> None:
    # A [0,10] 100 tokens, B [5,15] 300 tokens, C [20,30] 50 tokens: in flight, by time,
    # 100 (5 s), 400 (5 s), 300 (5 s), 0 (5 s), 50 (10 s).
    need = demand([Request(0, 10, 60, 40), Request(5, 15, 200, 100), Request(20, 30, 50, 0)])
    assert need.requests == 3 and need.span_s == 30
    assert (need.concurrency.p50, need.concurrency.p95, need.concurrency.max) == (1, 2, 2)
    assert need.concurrency.mean == pytest.approx(1.0)
    assert (need.kv_tokens.p50, need.kv_tokens.p95, need.kv_tokens.p99) == (50, 400, 400)
    assert need.kv_tokens.mean == pytest.approx(150)
    assert need.tokens_per_s.p99 == pytest.approx(450 / 30)  # a 30 s span: one short minute
    assert (need.output_tokens.p50, need.output_tokens.max) == (40, 100)


def test_a_burst_of_long_contexts_sizes_the_pool_not_the_average() -> None:
    # 90 s of one 1K-token request at a time, then ten 50K-token requests at once for 10 s.
    short = [Request(10 * i, 10 * i + 10, 900, 100) for i in range(9)]
    long = [Request(90, 100, 49_000, 1_000) for _ in range(10)]
    need = demand(short + long)
    assert need.kv_tokens.p50 == 1_000 and need.kv_tokens.p99 == 500_000
    assert need.kv_tokens_by_averages == pytest.approx(1.9 * 509_000 / 19)
    sizing = size(need, 100_000, 0.9, None, 0.2, 3.5)
    assert sizing.kv_bound_replicas == 6  # 500,000 / 90,000 usable per replica = 5.6
    assert sizing.replicas == 7  # 5.6 x 1.2 = 6.7
    assert sizing.by_averages_replicas == 1  # the average would have OOMed in the burst
    assert sizing.min_warm_replicas == 1
    assert sizing.usd_per_hour == pytest.approx(24.5)
    # Throughput can bind instead: the last 40 s carry 503,000 tokens (12,575 tokens/s).
    by_rate = size(need, 100_000, 0.9, 1_000, 0.2, None)
    assert by_rate.throughput_bound_replicas == 13
    assert by_rate.replicas == 16  # 12.6 x 1.2 = 15.1
    assert by_rate.usd_per_hour is None


def test_no_requests_is_no_demand() -> None:
    need = demand([])
    assert need.requests == 0 and need.kv_tokens.p99 == 0


def test_the_counter_streams_in_order_and_rounds_kv_levels_up() -> None:
    from gateway.accounting.capacity import DemandCounter

    counter = DemandCounter()
    counter.add(Request(0, 10, 12_000, 345))  # 12,345 tokens in flight: counted as 12,400
    with pytest.raises(ValueError):
        counter.add(Request(-1, 5, 1, 1))  # the ledger is read in order of start
    need = counter.result()
    assert need.kv_tokens.max == 12_400 and need.request_tokens.max == 12_345
