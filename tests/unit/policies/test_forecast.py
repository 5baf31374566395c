"""The pool's forecast and schedule on synthetic ledgers with known shapes: a weekly
business-hours pattern, a trend, a spike; GPU types that fit the model or not; exact money."""

from __future__ import annotations

from fractions import Fraction

import pytest

from policies.forecast import (
    SLOT_S,
    SLOTS_PER_HOUR,
    Load,
    fit,
    held_out_error,
    hour_of_week,
    slot_loads,
)
from policies.pool import Capacity, GpuType
from policies.schedule import cheapest, fits, plan

MONDAY = 4 * 86_400  # 1970-01-05, a Monday, 00:00 UTC
WEEK_SLOTS = 7 * 24 * SLOTS_PER_HOUR


def business(slot: int, scale: float = 1.0) -> Load:
    """Weekdays 09:00-17:00 UTC busy, the rest quiet."""
    how = hour_of_week(slot)
    busy = how < 5 * 24 and 9 <= how % 24 < 17
    kv = (200_000.0 if busy else 20_000.0) * scale
    return Load(tokens_per_s=kv / 20, concurrency=kv / 2000, kv_tokens=kv)


def weeks(n: int, scale_last_day: float = 1.0) -> dict[int, Load]:
    first = MONDAY // SLOT_S
    observed = {first + i: business(first + i) for i in range(n * WEEK_SLOTS)}
    last_day = first + n * WEEK_SLOTS - 24 * SLOTS_PER_HOUR
    for slot in range(last_day, first + n * WEEK_SLOTS):
        observed[slot] = business(slot, scale_last_day)
    return observed


def test_monday_is_monday() -> None:
    assert hour_of_week(MONDAY // SLOT_S) == 0
    assert hour_of_week(MONDAY // SLOT_S + 10 * SLOTS_PER_HOUR) == 10


def test_the_weekly_pattern_is_forecast_for_the_next_week() -> None:
    observed = weeks(3)
    now = max(observed) + 1  # the next Monday 00:00
    model = fit(observed, now)
    assert model.factor == pytest.approx(1.0)
    assert model.at(now + 10 * SLOTS_PER_HOUR).kv_tokens == pytest.approx(200_000)
    assert model.at(now + 3 * SLOTS_PER_HOUR).kv_tokens == pytest.approx(20_000)
    assert model.at(now + (5 * 24 + 10) * SLOTS_PER_HOUR).kv_tokens == pytest.approx(20_000)
    assert held_out_error(observed) == pytest.approx(0.0)


def test_the_trend_carries_growth_and_is_bounded() -> None:
    grown = fit(weeks(3, scale_last_day=1.5), max(weeks(3)) + 1)
    assert grown.factor == pytest.approx(1.5, rel=0.05)
    assert grown.at(max(weeks(3)) + 1 + 10 * SLOTS_PER_HOUR).kv_tokens > 250_000
    wild = fit(weeks(3, scale_last_day=9.0), max(weeks(3)) + 1)
    assert wild.factor == 2.0


def test_an_unchanged_week_has_no_trend_even_when_slots_vary_within_the_hour() -> None:
    """The trend compares each hour's peak with the profile's peak for it: slots that vary
    within the hour (every other one at half) are no fall in demand."""
    observed = {s: v.scaled(1.0 if s % 2 else 0.5) for s, v in weeks(3).items()}
    now = max(observed) + 1
    assert fit(observed, now).factor == pytest.approx(1.0)
    assert fit(observed, now - 5).factor == pytest.approx(1.0)  # mid-hour: whole hours only


def test_the_hour_still_running_is_not_held_out() -> None:
    observed = weeks(3)
    first_slot_of_next_hour = max(observed) + 1
    observed[first_slot_of_next_hour] = Load(1.0, 1.0, 1.0)  # five minutes of a quiet hour
    assert held_out_error(observed) == pytest.approx(0.0)


def test_one_spike_does_not_move_the_profile() -> None:
    observed = weeks(3)
    spike = MONDAY // SLOT_S + WEEK_SLOTS + 10 * SLOTS_PER_HOUR  # the second Monday, 10:00
    observed[spike] = Load(1e6, 1e3, 5_000_000)
    model = fit(observed, max(observed) + 1)
    assert model.at(spike + 2 * WEEK_SLOTS).kv_tokens == pytest.approx(200_000)


def test_held_out_error_needs_a_week_and_sees_a_change() -> None:
    assert held_out_error(weeks(1)) is None
    changed = weeks(3, scale_last_day=1.3)  # the held-out day is 30 % busier…
    error = held_out_error(changed)
    assert error is not None and 0.2 < error < 0.35  # …than a profile without it says


def test_slot_loads_are_the_p99_of_what_runs_at_once() -> None:
    # Two requests overlap for 30 s in the first slot; one alone in the second.
    requests = [(0.0, 60.0, 1000), (30.0, 60.0, 500), (400.0, 420.0, 200)]
    loads = slot_loads(requests)
    assert loads[0].kv_tokens == 1500 and loads[0].concurrency == 2
    assert loads[1].kv_tokens == 200
    assert loads[0].tokens_per_s == pytest.approx(100.0)  # 1,000 tokens started in 10 s


A10 = GpuType(usd_per_hour=1.2, memory_gb=24, kv_tokens_per_replica=50_000, tokens_per_s=2_500)
H100 = GpuType(usd_per_hour=9.0, memory_gb=80, kv_tokens_per_replica=600_000, tokens_per_s=25_000)


def test_the_cheapest_type_that_holds_the_load_is_chosen() -> None:
    both = Capacity(model_memory_gb=16, gpus={"a10": A10, "h100": H100}, headroom=0.0)
    quiet = cheapest(both, Load(1_000, 5, 40_000), max_kv_usage=1.0)
    assert quiet == cheapest(both, Load(1_000, 5, 40_000), 1.0) and quiet.gpu == "a10"
    assert quiet.replicas == 1
    # 2.4M KV tokens: 48 A10s ($57.6/h) or 4 H100s ($36/h).
    busy = cheapest(both, Load(10_000, 500, 2_400_000), max_kv_usage=1.0)
    assert (busy.gpu, busy.replicas) == ("h100", 4)


def test_a_model_that_does_not_fit_a_type_is_never_planned_on_it() -> None:
    big = Capacity(model_memory_gb=40, gpus={"a10": A10, "h100": H100})
    assert not fits(big, A10) and fits(big, H100)
    assert cheapest(big, Load(1, 1, 1_000), 0.92).gpu == "h100"
    with pytest.raises(ValueError, match="fits none"):
        cheapest(Capacity(model_memory_gb=100, gpus={"a10": A10}), Load(), 0.92)


def test_a_days_schedule_its_floor_and_its_exact_cost_beside_a_flat_plan() -> None:
    capacity = Capacity(model_memory_gb=16, gpus={"a10": A10, "h100": H100}, headroom=0.2,
                        warm_floor_margin=0.2)  # fmt: skip
    observed = weeks(3)
    now = max(observed) + 1
    model = fit(observed, now)
    slots = list(range(now, now + 24 * SLOTS_PER_HOUR))  # the next Monday
    schedule = plan(capacity, slots, [model.at(s) for s in slots], max_kv_usage=0.9)
    night, day = schedule.choices[3 * SLOTS_PER_HOUR], schedule.choices[10 * SLOTS_PER_HOUR]
    # Night: 20k KV tokens x 1.2 over 45k usable per A10 → 1; the floor is 24k: still 1.
    assert (night.gpu, night.replicas) == ("a10", 1)
    # Day: 200k x 1.2 = 240k KV tokens: 6 A10s ($7.2/h) rather than 1 H100 ($9/h).
    assert (day.gpu, day.replicas) == ("a10", 6)
    assert schedule.flat == day and schedule.warm_floor == night
    busy_slots = 8 * SLOTS_PER_HOUR
    expected = Fraction("1.2") * (6 * busy_slots + 1 * (len(slots) - busy_slots)) * 1_000_000 / 12
    assert schedule.cost_micro_usd == round(expected)
    assert schedule.flat_cost_micro_usd == round(Fraction("1.2") * 6 * len(slots) * 1_000_000 / 12)
    assert 0.5 < schedule.saving_share < 0.6
