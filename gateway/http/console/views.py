"""What each console page shows, as plain data for its template: read from the routing
state, the pools, the limit and spend counters, the ledger and the metrics registry."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.accounting.idle import PoolPeriod, pool_periods
from gateway.accounting.reports import SpendRow, parse_when, spend, spend_by
from gateway.http.console.port import ConsolePort
from gateway.http.console.sampler import samples
from gateway.state.names import bucket_name, limit_counter, limit_scope, periods, rate_counter
from policies.limits import Rate
from policies.routing import target_key
from policies.schema import Budget, GatewayConfig
from policies.schema_base import Limits

# -- routes and targets ------------------------------------------------------------------------


@dataclass
class TargetRow:
    key: str
    provider: str
    model: str
    breaker: str
    breaker_reason: str
    reopens_in_s: float
    cooldown_s: float
    headroom_blocked_s: float
    requests: int
    failures: int
    p95_ttft_ms: float | None
    p95_latency_ms: float | None
    errors: dict[str, int]  # error class → failed attempts since start (this process)


@dataclass
class RouteRow:
    name: str
    strategy: str
    targets: list[TargetRow] = field(default_factory=list)


async def routes(port: ConsolePort, now: float) -> list[RouteRow]:
    config = port.config()
    errors = _attempt_errors(port)
    out = []
    for name, route in config.routes.items():
        window_s = route.fail_over_when.window_s
        keys = [target_key(t) for t in route.targets]
        views = await port.state.views(keys, now, window_s)
        row = RouteRow(name, route.strategy)
        for target, key in zip(route.targets, keys, strict=True):
            view = views[key]
            stats = port.state.window_stats(key, now, window_s)
            row.targets.append(
                TargetRow(
                    key=key,
                    provider=target.provider,
                    model=target.model,
                    breaker=view.breaker.phase,
                    breaker_reason=view.breaker.reason,
                    reopens_in_s=max(0.0, view.breaker.open_until - now),
                    cooldown_s=max(0.0, view.cooldown_until - now),
                    headroom_blocked_s=max(0.0, view.headroom_until - now),
                    requests=stats.requests,
                    failures=stats.failures,
                    p95_ttft_ms=_ms(stats.p95_ttft_s),
                    p95_latency_ms=_ms(stats.p95_latency_s),
                    errors=errors.get((target.provider, target.model), {}),
                )
            )
        out.append(row)
    return out


def target_keys(config: GatewayConfig) -> set[str]:
    return {target_key(t) for route in config.routes.values() for t in route.targets}


def _attempt_errors(port: ConsolePort) -> dict[tuple[str, str], dict[str, int]]:
    out: dict[tuple[str, str], dict[str, int]] = {}
    for name, labels, value in samples(port.metrics.attempts):
        if name == "spillover_upstream_attempts_total" and labels.get("outcome") == "failed":
            errors = out.setdefault((labels["provider"], labels["model"]), {})
            errors[labels.get("error", "?")] = int(value)
    return out


# -- the pool -----------------------------------------------------------------------------------


@dataclass
class ReplicaRow:
    url: str
    state: str
    for_s: float
    kv_usage: float | None
    running: float | None
    waiting: float | None
    outstanding_tokens: int
    prefix_hit_ratio: float | None
    tokens_per_s: float
    last_error: str


@dataclass
class PoolOutlookRow:
    """What the forecast asks of the pool one lead time ahead (pools with `capacity:`)."""

    replicas: int
    gpu: str
    reason: str  # forecast, or warm_floor
    kv_tokens: float
    error: float | None  # on the last day, held out; None until a week and a day


@dataclass
class PoolRow:
    name: str
    model: str
    warm: int
    min_warm: int
    replicas: list[ReplicaRow]
    shed: dict[str, int]  # reason → requests shed since start (this process)
    outlook: PoolOutlookRow | None = None


def _outlooks(port: ConsolePort) -> dict[str, PoolOutlookRow]:
    """The exported forecast per pool, as an autoscaler reads it."""
    m = port.metrics
    forecast = {(lb["pool"], lb["what"]): v for _, lb, v in samples(m.pool_forecast)}
    errors = {lb["pool"]: v for _, lb, v in samples(m.pool_forecast_error)}
    out = {}
    for _, labels, value in samples(m.pool_desired_replicas):
        pool = labels["pool"]
        if value > 0 or pool not in out:
            out[pool] = PoolOutlookRow(
                int(value),
                labels["gpu"],
                labels["reason"],
                forecast.get((pool, "kv_tokens"), 0.0),
                errors.get(pool),
            )
    return {pool: row for pool, row in out.items() if row.replicas > 0}


def pools(port: ConsolePort) -> list[PoolRow]:
    outlooks = _outlooks(port)
    shed: dict[str, dict[str, int]] = {}
    for name, labels, value in samples(port.metrics.pool.shed):
        if name == "spillover_pool_shed_total":
            reasons = shed.setdefault(labels["pool"], {})
            reasons[labels["reason"]] = reasons.get(labels["reason"], 0) + int(value)
    now = time.monotonic()
    out = []
    for name, pool in port.pools().items():
        rows = []
        for replica in pool.replicas.values():
            snap = replica.snapshot
            rows.append(
                ReplicaRow(
                    url=replica.url,
                    state=replica.state,
                    for_s=now - replica.since,
                    kv_usage=snap.kv_usage if snap else None,
                    running=snap.running if snap else None,
                    waiting=snap.waiting if snap else None,
                    outstanding_tokens=replica.outstanding_tokens,
                    prefix_hit_ratio=replica.rates.prefix_hit_ratio,
                    tokens_per_s=replica.rates.prompt_tokens_per_s
                    + replica.rates.generation_tokens_per_s,
                    last_error=replica.last_error,
                )
            )
        out.append(
            PoolRow(
                name,
                pool.config.model,
                len(pool.ready()),
                pool.config.min_warm_replicas,
                rows,
                shed.get(name, {}),
                outlooks.get(name),
            )
        )
    return out


# -- spend --------------------------------------------------------------------------------------


@dataclass
class SpendReport:
    by: list[str]
    since: str
    rows: list[SpendRow]
    days: list[SpendRow]  # by day, for the chart
    total_usd: float
    savings_usd: float
    hosted_usd_per_mtok: float | None
    self_hosted_usd_per_mtok: float | None
    pools: list[PoolPeriod]  # each priced pool's capacity, what was billed, and idle


async def spend_report(port: ConsolePort, by: list[str], since: str) -> SpendReport:
    """The cost report of `spillover costs`; ValueError for a bad dimension or time."""
    now = time.time()
    start = parse_when(since, now)
    groupings = [by, ["provider"], ["day"]]
    rows, by_provider, days = await spend_by(
        port.config().ledger.url, groupings, start, None, port.prices()
    )
    days.sort(key=lambda r: r.group["day"])
    return SpendReport(
        by=by,
        since=since,
        rows=rows,
        days=days,
        total_usd=sum(r.spend_usd for r in by_provider),
        savings_usd=sum(r.cache_savings_usd for r in by_provider),
        hosted_usd_per_mtok=_per_mtok([r for r in by_provider if not r.self_hosted]),
        self_hosted_usd_per_mtok=_per_mtok([r for r in by_provider if r.self_hosted]),
        pools=pool_periods(port.config(), by_provider, start or now - 7 * 86_400, now),
    )


async def spend_today(port: ConsolePort) -> float:
    """Spend since midnight in the config's time zone, from the ledger."""
    config = port.config()
    now = time.time()
    midnight = datetime.fromtimestamp(now, _zone(config.timezone)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    rows = await spend(config.ledger.url, [], midnight.timestamp(), None, port.prices())
    return sum(r.spend_usd for r in rows)


def _per_mtok(rows: list[SpendRow]) -> float | None:
    tokens = sum(r.prompt_tokens + r.completion_tokens for r in rows)
    return sum(r.spend_usd for r in rows) / (tokens / 1e6) if tokens else None


# -- limits and budgets -------------------------------------------------------------------------


@dataclass(frozen=True)
class Use:
    used: float  # requests or tokens in the last minute (ledger), or requests in flight
    limit: int
    room_now: int | None = None  # what the limit would admit at once right now (GCRA)


@dataclass
class UseRow:
    scope: str  # "key" or "team"
    name: str
    rpm: Use | None
    tpm: Use | None
    concurrent: Use | None
    budgets: list[tuple[str, float, float, float, str]]  # (period, spent, reserved, limit, mode)


async def limits(port: ConsolePort, recent: bool = True) -> list[UseRow]:
    """Each key and team: its limits' use and its budgets. `recent`: count the last
    minute's requests and tokens from the ledger (two queries; the overview skips them)."""
    config = port.config()
    owners: list[tuple[str, str, Limits, Budget]] = [
        ("key", k.name, k.limits, k.budget) for k in config.keys
    ]
    owners += [("team", name, t.limits, t.budget) for name, t in config.teams.items()]
    counters = [
        counter
        for scope, name, lim, _ in owners
        for counter in (
            rate_counter(limit_scope(scope, name), "rpm", lim.rpm or 0),
            rate_counter(limit_scope(scope, name), "tpm", lim.tpm or 0),
            limit_counter(limit_scope(scope, name), "concurrent"),
        )
    ]
    raw = dict(zip(counters, await port.limiter.peek(counters), strict=True))
    last_minute = await _last_minute(port) if recent else {}
    now = time.time()
    current = periods(now, _zone(config.timezone))
    buckets = [
        bucket_name(scope, name, period, current[period][0])
        for scope, name, _, _ in owners
        for period in ("day", "month")
    ]
    money = dict(zip(buckets, await port.spend_counters.peek(buckets), strict=True))
    out = []
    for scope, name, lim, budget in owners:
        limited = limit_scope(scope, name)
        requests, tokens = last_minute.get((scope, name), (0, 0))

        rows_budget: list[tuple[str, float, float, float, str]] = []
        for period, usd in (("day", budget.daily_usd), ("month", budget.monthly_usd)):
            spent, reserved = money[bucket_name(scope, name, period, current[period][0])]
            if usd is not None or spent:
                rows_budget.append(
                    (period, spent / 1e6, reserved / 1e6, usd or 0.0, budget.mode if usd else "")
                )
        counters = [
            rate_counter(limited, "rpm", lim.rpm or 0),
            rate_counter(limited, "tpm", lim.tpm or 0),
        ]
        in_flight = raw[limit_counter(limited, "concurrent")]
        out.append(
            UseRow(
                scope,
                name,
                _rate_use(lim.rpm, lim, requests, raw[counters[0]], now),
                _rate_use(lim.tpm, lim, tokens, raw[counters[1]], now),
                Use(in_flight, lim.concurrent) if lim.concurrent else None,
                rows_budget,
            )
        )
    return out


def _rate_use(limit: int | None, limits: Limits, used: float, tat: float, now: float) -> Use | None:
    if not limit:
        return None
    # GCRA: the theoretical arrival time runs ahead of now by one interval per unit not yet
    # replenished; the limit admits its burst less those at once.
    rate = Rate.of(limit, limits)
    held = max(0.0, tat - now) / rate.interval
    return Use(used, limit, max(0, int(rate.burst + 1 - held)))


async def _last_minute(port: ConsolePort) -> dict[tuple[str, str], tuple[int, int]]:
    """Requests and tokens per key and per team over the last 60 s, from the ledger."""
    scopes = ["key", "team"]
    grouped = await spend_by(
        port.config().ledger.url, [[s] for s in scopes], time.time() - 60, None, port.prices()
    )
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for scope, rows in zip(scopes, grouped, strict=True):
        for row in rows:
            tokens = row.prompt_tokens + row.completion_tokens
            out[(scope, row.group[scope])] = (row.requests, tokens)
    return out


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


# -- config -------------------------------------------------------------------------------------


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
