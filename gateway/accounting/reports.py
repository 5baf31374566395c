"""Cost reports from the ledger: spend, requests, tokens, cache hit ratio and the money the
cache saved, fallback share, and $/1M tokens — grouped by any of team, key, route, provider,
model, ingress (the client's protocol) and day. One query function serves `spillover costs`
and `GET /admin/spend`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.accounting.pricing import MILLION, ModelPrice, PriceTable
from gateway.accounting.tables import engine_url, ledger_table

DIMENSIONS = ("team", "key", "route", "provider", "model", "ingress", "day")
_SINCE = re.compile(r"^(\d+)([smhd])$")


def parse_when(value: str | None, now: float) -> float | None:
    """`30d`, `12h`, `15m`, `90s` ago, or an ISO date/time; None stays None."""
    if not value:
        return None
    match = _SINCE.match(value.strip())
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        return now - amount * {"s": 1, "m": 60, "h": 3600, "d": 86_400}[unit]
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


@dataclass
class SpendRow:
    group: dict[str, str]
    requests: int
    spend_usd: float
    unpriced_requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cache_hit_ratio: float
    cache_savings_usd: float
    fallback_share: float
    response_cache_hits: int
    response_cache_saved_usd: float
    usd_per_mtok: float | None
    self_hosted: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _column(dimension: str) -> Any:
    table = ledger_table.c
    if dimension == "key":
        return table.key_name
    if dimension == "day":
        return func.strftime("%Y-%m-%d", table.ts, "unixepoch")  # SQLite; spend() swaps in
        # PostgreSQL's to_char for that dialect
    return getattr(table, dimension)


async def spend(
    url: str,
    by: list[str],
    since: float | None,
    until: float | None,
    prices: PriceTable,
    progress: Callable[[int], None] | None = None,
) -> list[SpendRow]:
    """Aggregate the ledger. Cache savings are priced per (provider, model), so those two
    are always part of the grouping and rolled up afterwards."""
    [rows] = await spend_by(url, [by], since, until, prices, progress)
    return rows


async def spend_by(
    url: str,
    groupings: list[list[str]],
    since: float | None,
    until: float | None,
    prices: PriceTable,
    progress: Callable[[int], None] | None = None,
) -> list[list[SpendRow]]:
    """`spend` for several groupings of the same window, on one connection."""
    for by in groupings:
        unknown = [d for d in by if d not in DIMENSIONS]
        if unknown:
            raise ValueError(
                f"cannot group by {', '.join(unknown)} (choose from {', '.join(DIMENSIONS)})"
            )
        if len(set(by)) != len(by) or len(by) > len(DIMENSIONS):
            raise ValueError("group by each dimension at most once")
    engine = create_async_engine(engine_url(url))
    try:
        postgresql = engine.dialect.name == "postgresql"
        async with engine.connect() as conn:
            raws = [
                (await conn.execute(_grouped(by, postgresql, since, until))).all()
                for by in groupings
            ]
    finally:
        await engine.dispose()
    return [_rows(raw, by, prices, progress) for raw, by in zip(raws, groupings, strict=True)]


def _rows(
    raw: Any, by: list[str], prices: PriceTable, progress: Callable[[int], None] | None
) -> list[SpendRow]:
    groups: dict[tuple[str, ...], _Group] = {}
    for n, row in enumerate(raw, 1):
        values = list(row)
        group = tuple(str(v) if v is not None else "-" for v in values[: len(by)])
        provider, model = values[len(by)], values[len(by) + 1]
        sums = [int(v or 0) for v in values[len(by) + 2 :]]
        price = prices.price(provider, model) if provider and model else None
        self_hosted = bool(provider) and prices.kind(provider) == "vllm_pool"
        groups.setdefault(group, _Group()).add(sums, price, self_hosted)
        if progress:
            progress(n)
    ranked = sorted(groups.items(), key=lambda kv: -kv[1].cost)
    return [acc.row(dict(zip(by, group, strict=True))) for group, acc in ranked]


def _grouped(
    by: list[str], postgresql: bool, since: float | None, until: float | None
) -> Select[Any]:
    """Sums per group of `by` and per (provider, model)."""
    table = ledger_table.c
    day = func.to_char(func.to_timestamp(table.ts), "YYYY-MM-DD") if postgresql else _column("day")
    columns = {d: (day if d == "day" else _column(d)) for d in by}
    keys = [*columns.values(), table.provider, table.model]
    query = select(
        *[c.label(f"g{i}") for i, c in enumerate(keys)],
        func.count().label("requests"),
        func.sum(func.coalesce(table.cost_micro_usd, 0)).label("cost"),
        func.sum(
            case((and_(table.cost_micro_usd.is_(None), table.provider.is_not(None)), 1), else_=0)
        ).label("unpriced"),
        func.sum(table.prompt_tokens).label("prompt"),
        func.sum(table.cached_tokens).label("cached"),
        func.sum(table.completion_tokens).label("completion"),
        func.sum(case((table.fell_back.is_(True), 1), else_=0)).label("fell_back"),
        func.sum(case((table.cache_hit.is_(True), 1), else_=0)).label("answered_from_cache"),
        func.sum(table.cache_saved_micro_usd).label("answer_cache_saved"),
    ).group_by(*keys)
    if since is not None:
        query = query.where(table.ts >= since)
    if until is not None:
        query = query.where(table.ts < until)
    return query


@dataclass
class _Group:
    """One report row in the making: sums over its (provider, model) parts."""

    requests: int = 0
    cost: int = 0
    unpriced: int = 0
    prompt: int = 0
    cached: int = 0
    completion: int = 0
    fell_back: int = 0
    cache_hits: int = 0  # answered from the response cache
    cache_saved: int = 0  # … and what those answers had cost, micro-dollars
    savings: Decimal = Decimal(0)
    self_hosted: bool = False

    def add(self, sums: list[int], price: ModelPrice | None, self_hosted: bool) -> None:
        requests, cost, unpriced, prompt, cached, completion, fell_back, hits, saved = sums
        self.cache_hits += hits
        self.cache_saved += saved
        self.requests += requests
        self.cost += cost
        self.unpriced += unpriced
        self.prompt += prompt
        self.cached += cached
        self.completion += completion
        self.fell_back += fell_back
        if price is not None:
            self.savings += price.cache_saving(cached)
        self.self_hosted = self.self_hosted or self_hosted

    def row(self, group: dict[str, str]) -> SpendRow:
        tokens = self.prompt + self.completion
        return SpendRow(
            group=group,
            requests=self.requests,
            spend_usd=self.cost / 1_000_000,
            unpriced_requests=self.unpriced,
            prompt_tokens=self.prompt,
            cached_tokens=self.cached,
            completion_tokens=self.completion,
            cache_hit_ratio=self.cached / self.prompt if self.prompt else 0.0,
            cache_savings_usd=float(self.savings),
            fallback_share=self.fell_back / self.requests if self.requests else 0.0,
            response_cache_hits=self.cache_hits,
            response_cache_saved_usd=self.cache_saved / 1_000_000,
            usd_per_mtok=(self.cost / 1_000_000) / (tokens / float(MILLION)) if tokens else None,
            self_hosted=self.self_hosted,
        )
