"""Capacity planning from the ledger: size a self-hosted pool from
the request *distribution* — p95/p99 prompt and output sizes, the concurrency over time, and
the KV cache the requests in flight hold together — never from averages. A pool sized for
100 concurrent 1K-token requests runs out of KV cache when those 100 bring 50K-token prompts.

The arithmetic is pure (`demand`, `size`); `read_requests` is the only part that reads."""

from __future__ import annotations

import heapq
import math
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.accounting.tables import engine_url, ledger_table


@dataclass(frozen=True, slots=True)
class Request:
    """One served request from the ledger: when it ran and the tokens it held."""

    start: float
    end: float
    prompt_tokens: int
    completion_tokens: int

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Percentiles:
    p50: float
    p95: float
    p99: float
    max: float
    mean: float


def weighted(levels: Sequence[tuple[float, float]]) -> Percentiles:
    """Percentiles of values that each hold for a weight (a duration): the value below which
    that share of the total weight lies."""
    total = sum(w for _, w in levels if w > 0)
    if total <= 0:
        return Percentiles(0.0, 0.0, 0.0, 0.0, 0.0)
    ordered = sorted((v, w) for v, w in levels if w > 0)

    def at(share: float) -> float:
        reach = share * total
        seen = 0.0
        for value, weight in ordered:
            seen += weight
            if seen >= reach - 1e-9:
                return value
        return ordered[-1][0]

    mean = sum(v * w for v, w in ordered) / total
    return Percentiles(at(0.5), at(0.95), at(0.99), ordered[-1][0], mean)


@dataclass(frozen=True, slots=True)
class Demand:
    requests: int
    span_s: float
    prompt_tokens: Percentiles
    output_tokens: Percentiles
    request_tokens: Percentiles  # prompt + output: what one request holds in the KV cache
    concurrency: Percentiles  # requests in flight, weighted by time
    kv_tokens: Percentiles  # the tokens of the requests in flight, together, by time
    tokens_per_s: Percentiles  # prompt + output tokens per second, per minute of the span

    @property
    def kv_tokens_by_averages(self) -> float:
        """What sizing by averages would provision: mean concurrency x mean request size."""
        return self.concurrency.mean * self.request_tokens.mean


def _ceil_3(value: int) -> int:
    """Up to three significant figures: the KV levels a long ledger produces stay few."""
    if value < 1000:
        return value
    unit = int(10 ** (len(str(value)) - 3))
    return -(-value // unit) * unit


class DemandCounter:
    """The demand of requests fed in order of start, in memory that does not grow with the
    ledger: sizes and levels are counted by value, and the sweep over starts and ends keeps
    only the requests still running. A request holds its whole context (prompt and output)
    while it runs: the peak it reaches."""

    def __init__(self) -> None:
        self.requests = 0
        self._sizes: tuple[Counter[int], Counter[int], Counter[int]] = (
            Counter(),
            Counter(),
            Counter(),
        )
        self._concurrency: defaultdict[int, float] = defaultdict(float)  # level -> seconds
        self._kv: defaultdict[int, float] = defaultdict(float)
        self._per_minute: Counter[int] = Counter()
        self._ends: list[tuple[float, int]] = []  # (end, tokens) of the running requests
        self._first: float | None = None
        self._now = 0.0
        self._running = 0
        self._tokens = 0

    def _advance(self, to: float) -> None:
        if to > self._now:
            self._concurrency[self._running] += to - self._now
            self._kv[_ceil_3(self._tokens)] += to - self._now
            self._now = to

    def add(self, request: Request) -> None:
        if self._first is None:
            self._first = self._now = request.start
        if request.start < self._now:
            raise ValueError("requests must come in order of start")
        self._end_until(request.start)
        self._advance(request.start)
        self._running += 1
        self._tokens += request.tokens
        heapq.heappush(self._ends, (max(request.end, request.start), request.tokens))
        self.requests += 1
        for counter, value in zip(
            self._sizes,
            (request.prompt_tokens, request.completion_tokens, request.tokens),
            strict=True,
        ):
            counter[value] += 1
        self._per_minute[int((request.start - self._first) // 60)] += request.tokens

    def _end_until(self, at: float) -> None:
        """End the running requests that finished by `at`, in order."""
        while self._ends and self._ends[0][0] <= at:
            end, tokens = heapq.heappop(self._ends)
            self._advance(end)
            self._running -= 1
            self._tokens -= tokens

    def result(self) -> Demand:
        self._end_until(math.inf)
        if self._first is None:
            empty = weighted([])
            return Demand(0, 0.0, empty, empty, empty, empty, empty, empty)
        span = self._now - self._first
        minutes = max(1, math.ceil(span / 60))
        # Each minute's rate over its length; the last one may be shorter (at least a second).
        rates = [
            (self._per_minute[m] / (60.0 if m < minutes - 1 else max(1.0, span - 60 * m)), 1.0)
            for m in range(minutes)
        ]
        prompt, output, total = (
            weighted([(float(v), float(n)) for v, n in c.items()]) for c in self._sizes
        )
        return Demand(
            requests=self.requests,
            span_s=span,
            prompt_tokens=prompt,
            output_tokens=output,
            request_tokens=total,
            concurrency=weighted([(float(v), t) for v, t in self._concurrency.items()]),
            kv_tokens=weighted([(float(v), t) for v, t in self._kv.items()]),
            tokens_per_s=weighted(rates),
        )


def demand(requests: Iterable[Request]) -> Demand:
    counter = DemandCounter()
    for request in sorted(requests, key=lambda r: r.start):
        counter.add(request)
    return counter.result()


@dataclass(frozen=True, slots=True)
class Sizing:
    kv_bound_replicas: int  # the p99 KV tokens in flight, within max_kv_usage of each cache
    throughput_bound_replicas: int | None  # the p99 tokens/s, at each replica's rate
    replicas: int  # the larger, with headroom
    min_warm_replicas: int  # the p50 need, with headroom: off-peak, kept warm
    usd_per_hour: float | None
    by_averages_replicas: int  # what sizing by averages would have said

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def size(
    need: Demand,
    kv_tokens_per_replica: int,
    max_kv_usage: float,
    tokens_per_s_per_replica: float | None,
    headroom: float,
    gpu_cost_per_hour: float | None,
) -> Sizing:
    usable = kv_tokens_per_replica * max_kv_usage

    def replicas(kv_tokens: float, tokens_per_s: float) -> float:
        by_rate = tokens_per_s / tokens_per_s_per_replica if tokens_per_s_per_replica else 0.0
        return max(kv_tokens / usable, by_rate)

    kv_bound = math.ceil(need.kv_tokens.p99 / usable)
    rate_bound = (
        math.ceil(need.tokens_per_s.p99 / tokens_per_s_per_replica)
        if tokens_per_s_per_replica
        else None
    )
    peak = replicas(need.kv_tokens.p99, need.tokens_per_s.p99)
    typical = replicas(need.kv_tokens.p50, need.tokens_per_s.p50)
    total = max(1, math.ceil(peak * (1 + headroom) - 1e-9))
    averages = replicas(need.kv_tokens_by_averages, need.tokens_per_s.mean)
    return Sizing(
        kv_bound_replicas=kv_bound,
        throughput_bound_replicas=rate_bound,
        replicas=total,
        min_warm_replicas=min(total, max(1, math.ceil(typical * (1 + headroom) - 1e-9))),
        usd_per_hour=total * gpu_cost_per_hour if gpu_cost_per_hour else None,
        by_averages_replicas=max(1, math.ceil(averages - 1e-9)),
    )


def _served(
    since: float | None, until: float | None, routes: Sequence[str], providers: Sequence[str]
) -> Any:
    """The served requests (status 200) in a time range, in order of start."""
    table = ledger_table.c
    query = (
        select(table.ts, table.latency_ms, table.prompt_tokens, table.completion_tokens)
        .where(table.status == 200)
        .order_by(table.ts)
    )
    if since is not None:
        query = query.where(table.ts >= since)
    if until is not None:
        query = query.where(table.ts < until)
    if routes:
        query = query.where(table.route.in_(list(routes)))
    if providers:
        query = query.where(table.provider.in_(list(providers)))
    return query.execution_options(yield_per=10_000)


async def read_requests(
    url: str,
    since: float | None,
    until: float | None,
    routes: Sequence[str] = (),
    providers: Sequence[str] = (),
) -> AsyncIterator[Request]:
    """The served requests of the ledger's time range, streamed in order of start: a long
    ledger never sits in memory."""
    engine = create_async_engine(engine_url(url))
    try:
        async with engine.connect() as conn:
            rows = await conn.stream(_served(since, until, routes, providers))
            async for ts, ms, prompt, output in rows:
                start = float(ts)
                yield Request(start, start + float(ms) / 1000, int(prompt), int(output))
    finally:
        await engine.dispose()


async def read_demand(
    url: str,
    since: float | None,
    until: float | None,
    routes: Sequence[str] = (),
    providers: Sequence[str] = (),
) -> Demand:
    """The demand of the served requests in the ledger's time range."""
    counter = DemandCounter()
    async for request in read_requests(url, since, until, routes, providers):
        counter.add(request)
    return counter.result()
