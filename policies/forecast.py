"""The pool's demand ahead of time, from what the ledger saw: per 5-minute slot, the p99 of
tokens per second, requests in flight and KV tokens in flight.

The method, on one page: a **weekly profile** — for each hour of the week, the median over
the weeks seen of that hour's peak slot (the median: one unusual day does not move it; the
peak slot: an hour is provisioned for its busiest five minutes) — **scaled by the recent
trend**: the last day's demand over what the profile said for it, bounded to half or double so one
odd day cannot run away with it. Why this and not a fitted model: capacity must be ready
*before* the traffic, business-hours and weekly cycles dominate LLM traffic, and a median
profile explains itself ("Tuesdays at 10:00 peak at 41k tokens/s") where a fitted model
does not; the trend carries growth (a launch, a new customer) until the profile catches up.
Its error is measured on the last days held out (`held_out_error`) and printed with it."""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

SLOT_S = 300
SLOTS_PER_HOUR = 12
HOURS_PER_WEEK = 7 * 24
TREND_BOUNDS = (0.5, 2.0)


@dataclass(frozen=True, slots=True)
class Load:
    """What a slot needs held at once: tokens per second, requests and KV tokens in flight."""

    tokens_per_s: float = 0.0
    concurrency: float = 0.0
    kv_tokens: float = 0.0

    def scaled(self, factor: float) -> Load:
        return Load(self.tokens_per_s * factor, self.concurrency * factor, self.kv_tokens * factor)

    def peak(self, other: Load) -> Load:
        return Load(
            max(self.tokens_per_s, other.tokens_per_s),
            max(self.concurrency, other.concurrency),
            max(self.kv_tokens, other.kv_tokens),
        )


def slot_of(ts: float) -> int:
    return int(ts // SLOT_S)


def hour_of_week(slot: int) -> int:
    """0 is Monday 00:00 UTC (the epoch was a Thursday)."""
    return (slot // SLOTS_PER_HOUR + 3 * 24) % HOURS_PER_WEEK


def profile(observed: Mapping[int, Load]) -> dict[int, Load]:
    """Hour of the week → the median, over the weeks seen, of that hour's peak slot."""
    peaks: dict[tuple[int, int], Load] = {}
    for slot, load in observed.items():
        key = (slot // SLOTS_PER_HOUR, hour_of_week(slot))  # (this very hour, its hour of week)
        peaks[key] = peaks.get(key, Load()).peak(load)
    by_hour: dict[int, list[Load]] = {}
    for (_, how), load in peaks.items():
        by_hour.setdefault(how, []).append(load)
    return {
        how: Load(
            statistics.median(x.tokens_per_s for x in loads),
            statistics.median(x.concurrency for x in loads),
            statistics.median(x.kv_tokens for x in loads),
        )
        for how, loads in by_hour.items()
    }


def trend(
    observed: Mapping[int, Load], weekly: Mapping[int, Load], since_slot: int, until_slot: int
) -> float:
    """The demand seen in the whole hours from `since_slot` to `until_slot` over what the
    profile said for them — like with like: each hour's peak slot against the profile's peak
    for that hour (an hour's every slot against its peak would read as a fall)."""
    first_hour = -(-since_slot // SLOTS_PER_HOUR)  # the first whole hour
    peaks: dict[int, Load] = {}
    for slot, load in observed.items():
        hour = slot // SLOTS_PER_HOUR
        if hour >= first_hour and (hour + 1) * SLOTS_PER_HOUR <= until_slot:
            peaks[hour] = peaks.get(hour, Load()).peak(load)
    seen = expected = 0.0
    for hour, load in peaks.items():
        seen += load.kv_tokens + load.tokens_per_s
        base = weekly.get(hour_of_week(hour * SLOTS_PER_HOUR), Load())
        expected += base.kv_tokens + base.tokens_per_s
    if expected <= 0 or seen <= 0:
        return 1.0
    low, high = TREND_BOUNDS
    return min(high, max(low, seen / expected))


@dataclass(frozen=True, slots=True)
class Forecast:
    weekly: dict[int, Load]
    factor: float  # the trend

    def at(self, slot: int) -> Load:
        return self.weekly.get(hour_of_week(slot), Load()).scaled(self.factor)


def fit(observed: Mapping[int, Load], now_slot: int, trend_slots: int = 24 * 12) -> Forecast:
    """The forecast from slots before `now_slot` (the last day's trend by default)."""
    past = {s: v for s, v in observed.items() if s < now_slot}
    weekly = profile(past)
    return Forecast(weekly, trend(past, weekly, now_slot - trend_slots, now_slot))


def whole_hours_end(observed: Mapping[int, Load]) -> int:
    """The slot after the last whole hour seen (the hour still running would read low)."""
    last = max(observed) + 1
    return last - last % SLOTS_PER_HOUR


def held_out_error(observed: Mapping[int, Load], days: int = 1) -> float | None:
    """Mean absolute percentage error, per hour, of the peak KV tokens in flight the
    forecast gave for the last `days` days of whole hours, fitted without them. None: too
    little history (under a week plus the days held out)."""
    if not observed:
        return None
    end = whole_hours_end(observed)
    cut = end - days * 24 * SLOTS_PER_HOUR
    if cut - min(observed) < 7 * 24 * SLOTS_PER_HOUR:
        return None
    model = fit(observed, cut)
    peaks: dict[int, float] = {}
    for slot, load in observed.items():
        if cut <= slot < end:
            hour = slot // SLOTS_PER_HOUR
            peaks[hour] = max(peaks.get(hour, 0.0), load.kv_tokens)
    errors = [
        abs(model.at(hour * SLOTS_PER_HOUR).kv_tokens - actual) / actual
        for hour, actual in peaks.items()
        if actual > 0
    ]
    return statistics.mean(errors) if errors else None


def p99(values: Iterable[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


SAMPLE_S = 10  # within a slot, the load is read every ten seconds; the slot keeps the p99


def slot_loads(requests: Iterable[tuple[float, float, int]]) -> dict[int, Load]:
    """Per slot, the p99 of the load read every `SAMPLE_S` seconds, from served requests
    (start, end, prompt + output tokens): a request holds its tokens in the KV cache while
    it runs; tokens per second count a request's tokens in the ten seconds it started."""
    ordered = sorted(requests)
    if not ordered:
        return {}
    ends: list[tuple[float, int]] = []
    samples: dict[int, list[Load]] = {}
    first = ordered[0][0]
    last = max(end for _, end, _ in ordered)
    t = first - first % SAMPLE_S
    i = running = held = 0
    while t <= last:
        started = 0
        while i < len(ordered) and ordered[i][0] < t + SAMPLE_S:
            start, end, tokens = ordered[i]
            heapq.heappush(ends, (max(end, start), tokens))
            running, held, started = running + 1, held + tokens, started + tokens
            i += 1
        while ends and ends[0][0] < t:
            _, tokens = heapq.heappop(ends)
            running, held = running - 1, held - tokens
        samples.setdefault(slot_of(t), []).append(Load(started / SAMPLE_S, running, held))
        t += SAMPLE_S
    return {
        slot: Load(
            p99(x.tokens_per_s for x in loads),
            p99(x.concurrency for x in loads),
            p99(x.kv_tokens for x in loads),
        )
        for slot, loads in samples.items()
    }
