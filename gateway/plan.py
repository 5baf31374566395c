"""Capacity planning from the ledger, as the seed article asks: size a self-hosted pool from
the request *distribution* — p95/p99 prompt and output sizes, the concurrency over time, and
the KV cache the requests in flight hold together — never from averages. A pool sized for
100 concurrent 1K-token requests runs out of KV cache when those 100 bring 50K-token prompts.

The arithmetic is pure (`demand`, `size`); `read_requests` is the only part that reads."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.ledger import engine_url, ledger_table


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


def percentiles(values: Sequence[float]) -> Percentiles:
    """Nearest-rank percentiles of equally weighted values."""
    return weighted([(v, 1.0) for v in values])


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


def demand(requests: Sequence[Request]) -> Demand:
    if not requests:
        empty = percentiles([])
        return Demand(0, 0.0, empty, empty, empty, empty, empty, empty)
    # A sweep over starts and ends: between two events the level holds, for that long. A
    # request holds its whole context (prompt and output) while it runs: the peak it reaches.
    events = sorted(
        [(r.start, 1, 1, r.tokens) for r in requests]
        + [(max(r.end, r.start), 0, -1, -r.tokens) for r in requests]
    )  # at equal times, ends (0) before starts (1)
    concurrency: list[tuple[float, float]] = []
    kv: list[tuple[float, float]] = []
    running = tokens = 0
    previous = events[0][0]
    for at, _, step, held in events:
        if at > previous:
            concurrency.append((running, at - previous))
            kv.append((tokens, at - previous))
            previous = at
        running += step
        tokens += held
    first, last = events[0][0], events[-1][0]
    minutes = max(1, math.ceil((last - first) / 60))
    per_minute = [0.0] * minutes
    for r in requests:
        per_minute[min(minutes - 1, int((r.start - first) // 60))] += r.tokens
    # Each minute's rate over its length; the last one may be shorter (at least a second).
    lengths = [60.0] * (minutes - 1) + [max(1.0, (last - first) - 60 * (minutes - 1))]
    return Demand(
        requests=len(requests),
        span_s=last - first,
        prompt_tokens=percentiles([r.prompt_tokens for r in requests]),
        output_tokens=percentiles([r.completion_tokens for r in requests]),
        request_tokens=percentiles([r.tokens for r in requests]),
        concurrency=weighted(concurrency),
        kv_tokens=weighted(kv),
        tokens_per_s=percentiles([t / s for t, s in zip(per_minute, lengths, strict=True)]),
    )


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


async def read_requests(
    url: str,
    since: float | None,
    until: float | None,
    routes: Sequence[str] = (),
    providers: Sequence[str] = (),
) -> list[Request]:
    """Served requests (status 200, tokens known) from the ledger's time range."""
    table = ledger_table.c
    query = select(table.ts, table.latency_ms, table.prompt_tokens, table.completion_tokens).where(
        table.status == 200
    )
    if since is not None:
        query = query.where(table.ts >= since)
    if until is not None:
        query = query.where(table.ts < until)
    if routes:
        query = query.where(table.route.in_(list(routes)))
    if providers:
        query = query.where(table.provider.in_(list(providers)))
    engine = create_async_engine(engine_url(url))
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).all()
    finally:
        await engine.dispose()
    return [
        Request(float(ts), float(ts) + float(ms) / 1000, int(prompt), int(output))
        for ts, ms, prompt, output in rows
    ]
