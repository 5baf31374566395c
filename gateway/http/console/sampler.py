"""The console's time series: every `console.sample_s` the gateway's own Prometheus registry
is read and turned into rates and latency quantiles over the last interval (request rate,
error and fallback shares, p50/p99 latency and TTFT, spend rate, the pool's admissions and
sheds). No work per request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterable

from prometheus_client import CollectorRegistry

log = logging.getLogger("spillover.console")

Labels = tuple[tuple[str, str], ...]
Flat = dict[tuple[str, Labels], float]

SERIES = (
    "rps",
    "error_rate",
    "fallback_share",
    "latency_p50_ms",
    "latency_p99_ms",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "spend_usd_per_h",
    "pool_admitted_ps",
    "pool_shed_ps",
    "pool_queue",
)


def flatten(registry: CollectorRegistry) -> Flat:
    flat: Flat = {}
    for family in registry.collect():
        for sample in family.samples:
            flat[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return flat


def total(flat: Flat, name: str, **match: str) -> float:
    return sum(
        v
        for (n, labels), v in flat.items()
        if n == name and all((k, want) in labels for k, want in match.items())
    )


def buckets(flat: Flat, name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts by upper bound, summed over its label sets."""
    out: dict[float, float] = {}
    for (n, labels), v in flat.items():
        if n == name + "_bucket":
            le = float(dict(labels)["le"])
            out[le] = out.get(le, 0.0) + v
    return out


def quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """Prometheus's histogram_quantile over cumulative counts (linear within a bucket)."""
    bounds = sorted(cumulative)
    if not bounds or cumulative[bounds[-1]] <= 0:
        return None
    rank = q * cumulative[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, count
    return lower


def _delta(now: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {le: v - before.get(le, 0.0) for le, v in now.items()}


class Sampler:
    def __init__(self, registry: CollectorRegistry, every_s: float, keep: int = 360) -> None:
        self._registry = registry
        self.every_s = every_s
        self.times: deque[float] = deque(maxlen=keep)
        self.series: dict[str, deque[float | None]] = {s: deque(maxlen=keep) for s in SERIES}
        self.latest: dict[str, float | None] = {s: None for s in SERIES}
        self._last: Flat | None = None
        self._last_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.tick(time.time())
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            try:
                self.tick(time.time())
            except Exception:  # a bad sample must not end the console's history
                log.exception("console sampler failed")

    def tick(self, now: float) -> None:
        flat = flatten(self._registry)
        before, self._last = self._last, flat
        elapsed, self._last_at = now - self._last_at, now
        if before is None:
            return
        point = self._point(flat, before, max(elapsed, 1e-3))
        self.times.append(now)
        for name in SERIES:
            self.series[name].append(point.get(name))
        self.latest = point

    def _point(self, flat: Flat, before: Flat, elapsed: float) -> dict[str, float | None]:
        def rise(name: str, **match: str) -> float:
            return max(0.0, total(flat, name, **match) - total(before, name, **match))

        requests = rise("spillover_requests_total")
        errors = sum(
            max(0.0, v - before.get((n, labels), 0.0))
            for (n, labels), v in flat.items()
            if n == "spillover_requests_total" and dict(labels).get("status", "").startswith("5")
        )
        latency = _delta(
            buckets(flat, "spillover_request_duration_seconds"),
            buckets(before, "spillover_request_duration_seconds"),
        )
        ttft = _delta(
            buckets(flat, "spillover_time_to_first_token_seconds"),
            buckets(before, "spillover_time_to_first_token_seconds"),
        )
        return {
            "rps": requests / elapsed,
            "error_rate": errors / requests if requests else None,
            "fallback_share": rise("spillover_fallbacks_total") / requests if requests else None,
            "latency_p50_ms": _ms(quantile(0.5, latency)),
            "latency_p99_ms": _ms(quantile(0.99, latency)),
            "ttft_p50_ms": _ms(quantile(0.5, ttft)),
            "ttft_p99_ms": _ms(quantile(0.99, ttft)),
            "spend_usd_per_h": rise("spillover_cost_usd_total") / elapsed * 3600,
            "pool_admitted_ps": rise("spillover_pool_picks_total") / elapsed,
            "pool_shed_ps": rise("spillover_pool_shed_total") / elapsed,
            "pool_queue": total(flat, "spillover_pool_queue_depth"),
        }

    def data(self, names: Iterable[str]) -> list[list[float | None]]:
        """uPlot's columns: the sample times, then each series."""
        return [list(self.times), *[list(self.series[n]) for n in names]]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
