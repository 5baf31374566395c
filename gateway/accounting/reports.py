"""Cost reports from the ledger: spend, requests, tokens, cache hit ratio and the money the
cache saved, fallback share, and $/1M tokens — grouped by any of team, key, route, provider,
model and day. One query function serves `spillover costs` and `GET /admin/spend`."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.accounting.ledger import engine_url, ledger_table
from gateway.accounting.pricing import MILLION, PriceTable

DIMENSIONS = ("team", "key", "route", "provider", "model", "day")
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
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:
        raise ValueError(
            f"cannot group by {', '.join(unknown)} (choose from {', '.join(DIMENSIONS)})"
        )
    engine = create_async_engine(engine_url(url))
    table = ledger_table.c
    day = (
        func.to_char(func.to_timestamp(table.ts), "YYYY-MM-DD")
        if engine.dialect.name == "postgresql"
        else _column("day")
    )
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
    ).group_by(*keys)
    if since is not None:
        query = query.where(table.ts >= since)
    if until is not None:
        query = query.where(table.ts < until)
    try:
        async with engine.connect() as conn:
            raw = (await conn.execute(query)).all()
    finally:
        await engine.dispose()
    groups: dict[tuple[str, ...], dict[str, Any]] = {}
    for n, row in enumerate(raw, 1):
        values = list(row)
        group = tuple(str(v) if v is not None else "-" for v in values[: len(by)])
        provider, model = values[len(by)], values[len(by) + 1]
        (requests, cost, unpriced, prompt, cached, completion, fell_back) = values[len(by) + 2 :]
        acc = groups.setdefault(
            group,
            {
                "requests": 0,
                "cost": 0,
                "unpriced": 0,
                "prompt": 0,
                "cached": 0,
                "completion": 0,
                "fell_back": 0,
                "savings": Decimal(0),
                "self_hosted": False,
            },
        )
        for name, value in (
            ("requests", requests),
            ("cost", cost),
            ("unpriced", unpriced),
            ("prompt", prompt),
            ("cached", cached),
            ("completion", completion),
            ("fell_back", fell_back),
        ):
            acc[name] += int(value or 0)
        if provider and model:
            price = prices.price(provider, model)
            if price is not None:
                acc["savings"] += price.cache_saving(int(cached or 0))
            acc["self_hosted"] = acc["self_hosted"] or prices.kind(provider) == "vllm_pool"
        if progress:
            progress(n)
    out = []
    for group, acc in sorted(groups.items(), key=lambda kv: -kv[1]["cost"]):
        tokens = acc["prompt"] + acc["completion"]
        out.append(
            SpendRow(
                group=dict(zip(by, group, strict=True)),
                requests=acc["requests"],
                spend_usd=acc["cost"] / 1_000_000,
                unpriced_requests=acc["unpriced"],
                prompt_tokens=acc["prompt"],
                cached_tokens=acc["cached"],
                completion_tokens=acc["completion"],
                cache_hit_ratio=acc["cached"] / acc["prompt"] if acc["prompt"] else 0.0,
                cache_savings_usd=float(acc["savings"]),
                fallback_share=acc["fell_back"] / acc["requests"] if acc["requests"] else 0.0,
                usd_per_mtok=(acc["cost"] / 1_000_000) / (tokens / float(MILLION))
                if tokens
                else None,
                self_hosted=acc["self_hosted"],
            )
        )
    return out
