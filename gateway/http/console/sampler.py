"""The console's time series: every `console.sample_s` the gateway's own Prometheus registry
is read and reduced to a few cumulative totals (requests, 5xx, fallbacks, spend, the pool's
admissions and sheds, latency and TTFT histograms). A chart point is the difference between
two consecutive samples; the overview's numbers are the difference over the last minute, so
one quiet or busy interval does not swing them. No work per request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.metrics import MetricWrapperBase

from gateway.metrics import GatewayMetrics

log = logging.getLogger("spillover.console")

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
SUMMARY_WINDOW_S = 60.0


def samples(*metrics: MetricWrapperBase) -> Iterator[tuple[str, dict[str, str], float]]:
    """(series name, labels, value) of each sample of these metrics — only them: a full
    collection of a busy gateway's registry takes milliseconds."""
    for metric in metrics:
        for family in metric.collect():
            for sample in family.samples:
                yield sample.name, sample.labels, sample.value


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


@dataclass
class Totals:
    """The registry reduced to what the console charts, all cumulative but the queue."""

    at: float
    requests: float = 0.0
    errors: float = 0.0
    fallbacks: float = 0.0
    cost_usd: float = 0.0
    pool_picks: float = 0.0
    pool_shed: float = 0.0
    pool_queue: float = 0.0
    latency: dict[float, float] = field(default_factory=dict)
    ttft: dict[float, float] = field(default_factory=dict)

    @classmethod
    def read(cls, metrics: GatewayMetrics, at: float) -> Totals:
        """From the few metrics the console charts, not the whole registry."""
        totals = cls(at)
        pool = metrics.pool
        for name, labels, value in samples(
            metrics.requests, metrics.fallbacks, metrics.cost_usd, pool.picks, pool.shed,
            pool.queue_depth, metrics.request_seconds, metrics.ttft_seconds,
        ):  # fmt: skip
            totals._add(name, labels, value)
        return totals

    def _add(self, name: str, labels: dict[str, str], value: float) -> None:
        if name == "spillover_requests_total":
            self.requests += value
            if labels.get("status", "").startswith("5"):
                self.errors += value
        elif name == "spillover_fallbacks_total":
            self.fallbacks += value
        elif name == "spillover_cost_usd_total":
            self.cost_usd += value
        elif name == "spillover_pool_picks_total":
            self.pool_picks += value
        elif name == "spillover_pool_shed_total":
            self.pool_shed += value
        elif name == "spillover_pool_queue_depth":
            self.pool_queue += value
        elif name in ("spillover_request_duration_seconds_bucket", _TTFT):
            histogram = self.latency if name != _TTFT else self.ttft
            le = float(labels["le"])
            histogram[le] = histogram.get(le, 0.0) + value

    def since(self, before: Totals) -> dict[str, float | None]:
        """What happened between `before` and these totals, as rates and shares."""
        elapsed = max(self.at - before.at, 1e-3)
        requests = max(0.0, self.requests - before.requests)
        latency = {le: v - before.latency.get(le, 0.0) for le, v in self.latency.items()}
        ttft = {le: v - before.ttft.get(le, 0.0) for le, v in self.ttft.items()}
        return {
            "rps": requests / elapsed,
            "error_rate": (self.errors - before.errors) / requests if requests else None,
            "fallback_share": (
                (self.fallbacks - before.fallbacks) / requests if requests else None
            ),
            "latency_p50_ms": _ms(quantile(0.5, latency)),
            "latency_p99_ms": _ms(quantile(0.99, latency)),
            "ttft_p50_ms": _ms(quantile(0.5, ttft)),
            "ttft_p99_ms": _ms(quantile(0.99, ttft)),
            "spend_usd_per_h": max(0.0, self.cost_usd - before.cost_usd) / elapsed * 3600,
            "pool_admitted_ps": max(0.0, self.pool_picks - before.pool_picks) / elapsed,
            "pool_shed_ps": max(0.0, self.pool_shed - before.pool_shed) / elapsed,
            "pool_queue": self.pool_queue,
        }


_TTFT = "spillover_time_to_first_token_seconds_bucket"


class Sampler:
    def __init__(self, metrics: GatewayMetrics, every_s: float, keep: int = 360) -> None:
        self._metrics = metrics
        self.every_s = every_s
        self.times: deque[float] = deque(maxlen=keep)
        self.series: dict[str, deque[float | None]] = {s: deque(maxlen=keep) for s in SERIES}
        # Enough samples to reach a minute back, for the summary.
        self._recent: deque[Totals] = deque(maxlen=int(SUMMARY_WINDOW_S / every_s) + 2)
        self._task: asyncio.Task[None] | None = None

    def start(self, now: float) -> None:
        self.tick(now)
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
                # Off the event loop: the metrics' own locks make reading them thread-safe.
                self.add(await asyncio.to_thread(Totals.read, self._metrics, time.time()))
            except Exception:  # a bad sample must not end the console's history
                log.exception("console sampler failed")

    def tick(self, now: float) -> None:
        self.add(Totals.read(self._metrics, now))

    def add(self, totals: Totals) -> None:
        now = totals.at
        if self._recent:
            point = totals.since(self._recent[-1])
            self.times.append(now)
            for name in SERIES:
                self.series[name].append(point[name])
        self._recent.append(totals)

    @property
    def latest(self) -> dict[str, float | None]:
        """The last minute (or as much of it as has been sampled)."""
        if len(self._recent) < 2:
            return {}
        newest = self._recent[-1]
        oldest = next(
            (t for t in self._recent if newest.at - t.at <= SUMMARY_WINDOW_S), self._recent[0]
        )
        if oldest is newest:
            oldest = self._recent[-2]
        return newest.since(oldest)

    def data(self, names: Iterable[str]) -> list[list[float | None]]:
        """uPlot's columns: the sample times, then each series."""
        return [list(self.times), *[list(self.series[n]) for n in names]]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
