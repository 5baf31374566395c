"""The routing decisions are pure: driven here with a fake clock and a seeded RNG."""

from __future__ import annotations

import random

from policies import routing
from policies.route import Breaker, FailOverWhen, Price, RetryPolicy, Route, Target
from policies.routing import BreakerState, TargetView, WindowStats, target_key

RULES = FailOverWhen(window_s=30, min_requests=10, error_rate=0.5, consecutive_failures=5)
BREAKER = Breaker(base_ejection_s=5, max_ejection_s=12, half_open_probes=1)
A = Target(provider="a", model="m")
B = Target(provider="b", model="m")


def _fail_n(n: int, state: BreakerState, now: float) -> BreakerState:
    for i in range(n):
        stats = WindowStats(requests=i + 1, failures=i + 1, consecutive_failures=i + 1)
        state = routing.on_failure(state, stats, now, RULES, BREAKER)
    return state


def test_breaker_opens_after_consecutive_failures_even_below_min_requests() -> None:
    state = _fail_n(4, BreakerState(), now=100.0)
    assert state.phase == "closed"
    state = _fail_n(5, BreakerState(), now=100.0)
    assert (state.phase, state.open_until, state.reason) == ("open", 105.0, "consecutive_failures")


def test_error_rate_needs_the_minimum_count() -> None:
    few = WindowStats(requests=9, failures=9, consecutive_failures=1)
    assert routing.trip_reason(few, RULES) is None
    many = WindowStats(requests=10, failures=5, consecutive_failures=1)
    assert routing.trip_reason(many, RULES) == "error_rate"
    slow = FailOverWhen(min_requests=1, error_rate=None, consecutive_failures=None, p95_ttft_ms=500)
    assert routing.trip_reason(WindowStats(requests=3, p95_ttft_s=0.6), slow) == "p95_ttft"
    limited = FailOverWhen(min_requests=2, error_rate=None, rate_limited_share=0.5)
    assert (
        routing.trip_reason(WindowStats(requests=4, rate_limited=2), limited)
        == "rate_limited_share"
    )


def test_half_open_probe_then_close_or_reopen_with_growing_capped_ejection() -> None:
    state = _fail_n(5, BreakerState(), now=0.0)
    assert routing.admit(state, 4.9, BREAKER)[0] == "deny"
    verdict, state = routing.admit(state, 5.0, BREAKER)
    assert verdict == "probe" and state.phase == "half_open"
    assert routing.admit(state, 5.1, BREAKER)[0] == "deny"  # one probe at a time
    state = routing.on_failure(state, WindowStats(), 5.2, RULES, BREAKER)
    assert (state.phase, state.ejections, state.open_until) == ("open", 2, 15.2)
    _, state = routing.admit(state, 15.2, BREAKER)
    state = routing.on_failure(state, WindowStats(), 15.3, RULES, BREAKER)
    assert state.open_until == 15.3 + 12  # 3 x 5 s, capped at 12 s
    _, state = routing.admit(state, 27.3, BREAKER)
    state = routing.on_success(state, 27.4, BREAKER)
    assert state.phase == "closed" and state.ejections == 3
    # Staying healthy for max_ejection_s earns back one ejection.
    assert routing.on_success(state, 27.4 + 12, BREAKER).ejections == 2


def test_plan_skips_open_cooling_exhausted_and_too_slow_targets() -> None:
    route = Route(targets=[A, B])
    views = {
        target_key(A): TargetView(breaker=BreakerState("open", open_until=50.0)),
        target_key(B): TargetView(cooldown_until=42.0),
    }
    usable, skips = routing.plan(route, [A, B], views, 40.0, None, 100, False)
    assert usable == []
    assert [(s.target, s.reason, s.until) for s in skips] == [
        (A, "breaker_open", 50.0),
        (B, "cooldown", 42.0),
    ]
    slow = {
        target_key(A): TargetView(stats=WindowStats(p95_ttft_s=0.2, tpot_s=0.01)),
        target_key(B): TargetView(headroom_until=41.0),
    }
    # A would need 0.2 s + 100 tokens x 0.01 s = 1.2 s with 1.0 s left; B said "0 left".
    usable, skips = routing.plan(
        route, [A, B], slow, 40.0, remaining_s=1.0, output_tokens=100, stream=False
    )
    assert usable == []
    assert [s.reason for s in skips] == ["deadline", "no_headroom"]
    usable, _ = routing.plan(
        route, [A, B], slow, 41.5, remaining_s=2.0, output_tokens=100, stream=False
    )
    assert usable == [A, B]


def test_feasibility_uses_ttft_for_streams_and_ttft_plus_tokens_otherwise() -> None:
    stats = WindowStats(p95_ttft_s=0.3, tpot_s=0.02)
    assert routing.estimated_seconds(stats, 50, stream=True) == 0.3
    assert routing.estimated_seconds(stats, 50, stream=False) == 0.3 + 50 * 0.02
    route = Route(targets=[A])
    views = {target_key(A): TargetView(stats=stats)}
    assert routing.plan(route, [A], views, 0.0, 1.0, 50, False)[1][0].reason == "deadline"
    assert routing.plan(route, [A], views, 0.0, 1.0, 50, True)[0] == [A]


def test_strategies() -> None:
    rng = random.Random(7)
    weighted = Route(
        strategy="weighted",
        targets=[
            Target(provider="a", model="m", weight=9),
            Target(provider="b", model="m", weight=1),
        ],
    )
    firsts = [routing.order(weighted, {}, rng)[0].provider for _ in range(2000)]
    assert 0.85 < firsts.count("a") / 2000 < 0.95
    cheap = Route(
        strategy="lowest_cost",
        targets=[
            Target(provider="a", model="m", price=Price(input_per_mtok=5, output_per_mtok=15)),
            Target(provider="b", model="m", price=Price(input_per_mtok=0.5, output_per_mtok=1.5)),
        ],
    )
    assert [t.provider for t in routing.order(cheap, {}, rng)] == ["b", "a"]
    fast = Route(strategy="lowest_latency", targets=[A, B])
    views = {
        target_key(A): TargetView(stats=WindowStats(p95_ttft_s=0.9)),
        target_key(B): TargetView(stats=WindowStats(p95_ttft_s=0.1)),
    }
    assert routing.order(fast, views, rng) == [B, A]


def test_backoff_and_retry_budget() -> None:
    policy = RetryPolicy(
        backoff_base_ms=100, backoff_cap_ms=1000, budget_ratio=0.2, budget_min_retries=3
    )
    rng = random.Random(1)
    assert routing.backoff_seconds(0, policy, rng, retry_after=None) == 0.0
    waits = [routing.backoff_seconds(5, policy, rng, None) for _ in range(200)]
    assert max(waits) <= 1.0 and min(waits) >= 0.0
    assert routing.backoff_seconds(1, policy, rng, retry_after=2.0) >= 2.0
    assert routing.retry_allowed(requests=10, retries=2, policy=policy)
    assert not routing.retry_allowed(requests=10, retries=3, policy=policy)
    assert routing.retry_allowed(requests=100, retries=19, policy=policy)
    assert not routing.retry_allowed(requests=100, retries=20, policy=policy)


def test_lowest_cost_orders_by_the_price_it_is_given_and_unknown_goes_last() -> None:
    rng = random.Random(1)
    listed = Route(
        strategy="lowest_cost",
        targets=[
            Target(provider="a", model="m", price=Price(input_per_mtok=0.1, output_per_mtok=0.1)),
            Target(provider="b", model="m"),
            Target(provider="c", model="m"),
        ],
    )
    charged = {"a": 9.0, "c": 1.0}  # what accounting charges, not the target's listed price
    ordered = routing.order(listed, {}, rng, cost_of=lambda t: charged.get(t.provider))
    assert [t.provider for t in ordered] == ["c", "a", "b"]
