"""GCRA against a fake clock: the burst, the steady rate and the any-window bound."""

from __future__ import annotations

import bisect
import random

from policies.limits import Rate, gcra, settle
from policies.schema_base import Limits


def _run(rate: Rate, arrivals: list[float], cost: int = 1) -> list[float]:
    tat, admitted = 0.0, []
    for now in arrivals:
        verdict = gcra(tat, now, rate, cost)
        if verdict.allowed:
            tat = verdict.tat
            admitted.append(now)
    return admitted


def test_burst_then_steady_rate() -> None:
    rate = Rate.of(600, Limits())  # 10/s, 1% burst: six at once
    assert rate.burst == 5
    admitted = _run(rate, [0.0] * 100)
    assert len(admitted) == 6  # the limit's own unit plus the burst
    refused = gcra(0.0 + 0.1 * 6, 0.0, rate, 1)
    assert not refused.allowed and 0.09 < refused.retry_after <= 0.1 + 1e-9


def test_any_60_second_window_admits_between_limit_and_limit_plus_burst() -> None:
    rng = random.Random(3)
    arrivals = sorted(rng.uniform(0, 300) for _ in range(6000))  # 20/s offered vs 10/s
    admitted = _run(Rate.of(600, Limits()), arrivals)
    counts = [bisect.bisect_left(admitted, s + 60) - i for i, s in enumerate(admitted) if s <= 240]
    assert max(counts) <= 606  # limit * (1 + burst_share)
    assert min(counts) >= 594
    two_percent = _run(Rate.of(600, Limits(burst_share=0.02)), arrivals)
    assert (
        max(
            bisect.bisect_left(two_percent, s + 60) - i
            for i, s in enumerate(two_percent)
            if s <= 240
        )
        <= 612
    )


def test_a_large_cost_passes_when_idle_and_holds_back_the_next() -> None:
    rate = Rate.of(6000, Limits())  # 100 tokens/s, burst 59
    first = gcra(0.0, 0.0, rate, 1_000)
    assert first.allowed and first.reset_after == 10.0
    second = gcra(first.tat, 1.0, rate, 10)
    assert not second.allowed and round(second.retry_after, 6) == 8.41  # 9 s of debt - 0.59
    # The real usage was 400 tokens, not 1,000: the debt shrinks by 6 s.
    tat = settle(first.tat, 1.0, rate, 1_000, 400)
    assert tat == 4.0
    assert round(gcra(tat, 1.0, rate, 10).retry_after, 6) == 2.41
    assert gcra(tat, 3.41, rate, 10).allowed


def test_tokens_per_minute_window_bound_with_weighted_costs() -> None:
    """tpm is the same GCRA with each request weighted by its tokens: any 60 s window admits
    at most the limit plus the burst plus one request (a request is admitted whole)."""
    rng = random.Random(5)
    rate = Rate.of(60_000, Limits())  # burst 599 tokens
    tat, admitted = 0.0, []
    for now in sorted(rng.uniform(0, 300) for _ in range(9000)):  # ~1,800 tokens/s offered
        cost = rng.randint(50, 300)
        verdict = gcra(tat, now, rate, cost)
        if verdict.allowed:
            tat = verdict.tat
            admitted.append((now, cost))
    windows = [
        sum(c for t, c in admitted if s <= t < s + 60) for s, _ in admitted[::40] if s <= 240
    ]
    assert max(windows) <= 60_000 + 600 + 300
    assert min(windows) >= 57_000
