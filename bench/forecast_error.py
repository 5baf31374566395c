"""The forecast's error on held-out days, beside two naive forecasts, on a simulated ledger.

    .venv/bin/python bench/forecast_error.py [--weeks 5] [--seed 1]

Five weeks of requests at real time (not compressed): Poisson arrivals following a business
day (quiet nights, a peak at 13:00), weekends at 40 %, each day's volume off by up to ±15 %
at random, growth of 3 % a week, and a campaign on the last Wednesday afternoon (x1.8, 14:00
to 16:00) that no history foretells. Each request holds 2,000 tokens for 20-60 s. The ledger's
slots come from `policies.forecast.slot_loads`, as `spillover plan --schedule` reads them.

Printed: the mean absolute error of each hour's peak KV tokens in flight over the held-out
days (`held_out_error`, the figure `spillover plan --schedule` prints), for the product's
forecast (hour-of-week median x the bounded last-day trend) and for "same hour yesterday" and
"same hour last week"; and the share of held-out hours each under-forecast by more than 20 %
(the ones a schedule without headroom would run short in).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policies.forecast import SLOTS_PER_HOUR, Load, fit, held_out_error, slot_loads, whole_hours_end

MONDAY = 4 * 86_400  # 1970-01-05, a Monday
DAY_SLOTS = 24 * SLOTS_PER_HOUR
PEAK_RATE = 0.6  # requests per second at the weekday peak


def rate(t: float, day_factor: float, campaign_day: int) -> float:
    day = int((t - MONDAY) // 86_400)
    hour = (t % 86_400) / 3600
    shape = 0.08 + math.exp(-(((hour - 13.0) / 3.0) ** 2))
    weekend = 0.4 if day % 7 >= 5 else 1.0
    growth = 1.03 ** (day / 7)
    campaign = 1.8 if day == campaign_day and 14 <= hour < 16 else 1.0
    return PEAK_RATE * shape * weekend * growth * day_factor * campaign


def ledger(weeks: int, seed: int) -> dict[int, Load]:
    rng = random.Random(seed)
    days = weeks * 7
    factors = [1 + rng.uniform(-0.15, 0.15) for _ in range(days)]
    campaign_day = days - 5  # the last week's Wednesday
    requests = []
    t = float(MONDAY)
    while t < MONDAY + days * 86_400:
        day = int((t - MONDAY) // 86_400)
        t += rng.expovariate(rate(t, factors[day], campaign_day))
        requests.append((t, t + rng.uniform(20, 60), 2_000))
    return slot_loads(requests)


def error(
    observed: dict[int, Load], cut: int, end: int, forecast: Callable[[int], float]
) -> tuple[float, float]:
    """(mean absolute percentage error, share under-forecast by > 20 %) of hourly peaks."""
    peaks: dict[int, float] = {}
    for slot, load in observed.items():
        if cut <= slot < end:
            hour = slot // SLOTS_PER_HOUR
            peaks[hour] = max(peaks.get(hour, 0.0), load.kv_tokens)
    errors, short = [], 0
    for hour, actual in peaks.items():
        if actual <= 0:
            continue
        predicted = forecast(hour * SLOTS_PER_HOUR)
        errors.append(abs(predicted - actual) / actual)
        short += predicted < 0.8 * actual
    return statistics.mean(errors), short / len(errors)


def hour_peak(observed: dict[int, Load], slot: int) -> float:
    first = slot - slot % SLOTS_PER_HOUR
    return max(
        (observed[s].kv_tokens for s in range(first, first + SLOTS_PER_HOUR) if s in observed),
        default=0.0,
    )


def candidates(past: dict[int, Load], cut: int) -> dict[str, Callable[[int], float]]:
    """Each forecast, made at `cut` from `past`: slot → KV tokens in flight."""
    model = fit(past, cut)

    def yesterday(slot: int) -> float:  # the last day before the cut, at the same hour
        return hour_peak(past, slot - ((slot - cut) // DAY_SLOTS + 1) * DAY_SLOTS)

    return {
        "Spillover (hour-of-week median x trend)": lambda slot: model.at(slot).kv_tokens,
        "same hour yesterday": yesterday,
        "same hour last week": lambda slot: hour_peak(past, slot - 7 * DAY_SLOTS),
    }


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--weeks", type=int, default=5)
    args.add_argument("--seed", type=int, default=1)
    opts = args.parse_args()
    observed = ledger(opts.weeks, opts.seed)
    end = whole_hours_end(observed)
    print(f"{opts.weeks} weeks, seed {opts.seed}, {len(observed)} slots of 5 minutes\n")
    print("| held out | forecast | mean abs. error (hourly peak KV) | hours short by > 20 % |")
    print("| --- | --- | ---: | ---: |")
    for days in (1, 7):
        cut = end - days * DAY_SLOTS
        past = {s: v for s, v in observed.items() if s < cut}
        for name, forecast in candidates(past, cut).items():
            mape, short = error(observed, cut, end, forecast)
            if name.startswith("Spillover"):  # the same figure `plan --schedule` prints
                assert abs(mape - (held_out_error(observed, days) or 0)) < 1e-9
            plural = "s" if days > 1 else ""
            print(f"| last {days} day{plural} | {name} | {mape:.1%} | {short:.1%} |")


if __name__ == "__main__":
    main()
