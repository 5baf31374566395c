"""The last stage: every request, whatever its outcome, is counted exactly once here — its
cost (integer micro-dollars), its ledger row, its metrics and the access log line."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

import orjson

from gateway.accounting.pricing import ModelPrice, PriceTable, cost_micro_usd
from gateway.accounting.row import LedgerRow
from gateway.ids import new_id
from gateway.metrics import GatewayMetrics
from gateway.pipeline.context import RequestContext
from gateway.providers.base import Usage
from policies.route import Target
from policies.schema import GatewayConfig

access_log = logging.getLogger("spillover.access")


class LedgerSink(Protocol):
    def add(self, record: LedgerRow) -> None: ...

    def accepting(self) -> bool: ...


class Accountant:
    def __init__(
        self,
        metrics: GatewayMetrics,
        prices: PriceTable,
        ledger: LedgerSink | None = None,
        log_access: bool = False,
    ) -> None:
        self._metrics = metrics
        self._prices = prices
        self._ledger = ledger
        self._log_access = log_access

    def configure(
        self,
        config: GatewayConfig,
        self_hosted: Mapping[str, Callable[[], ModelPrice | None]] | None = None,
    ) -> None:
        """The prices of the config being served, and the pools' amortised prices."""
        self._prices = self._prices.for_config(config, self_hosted)

    def price_of(self, provider: str, model: str) -> ModelPrice | None:
        """The price this gateway charges for `model` at `provider` (its current config)."""
        return self._prices.price(provider, model)

    def reasons(self, provider: str, model: str) -> bool:
        """Whether `model` at `provider` takes a reasoning effort."""
        return self._prices.reasons(provider, model)

    def accepting(self) -> bool:
        """Whether a row for a new request can be kept."""
        return self._ledger is None or self._ledger.accepting()

    @property
    def prices(self) -> PriceTable:
        return self._prices

    def record(self, ctx: RequestContext) -> LedgerRow:
        """Count the request once: its row (with its cost in micro-dollars, None when
        unknown) is made from its record, and the metrics, the access line — and the
        request's span — are read from the row."""
        cost, price = self._cost(ctx)
        row = self._row(ctx, cost)
        if self._ledger is not None:
            self._ledger.add(row)
        self._observe(row, price)
        if self._log_access:
            _access_line(row)
        return row

    def _cost(self, ctx: RequestContext) -> tuple[int | None, ModelPrice | None]:
        """What the request cost (None: its model's price is unknown) and the price."""
        outcome = ctx.outcome
        target, usage = outcome.served_by, outcome.usage
        if target is None or usage is None:
            return 0, None
        price = self._prices.price(target.provider, target.model)
        if outcome.segments:  # a resumed answer: each upstream's share at its own price
            return self._segments_cost(ctx), price
        return (None if price is None else cost_micro_usd(usage, price)), price

    def _observe(self, row: LedgerRow, price: ModelPrice | None) -> None:
        """The request's metrics, read from its row. Label values come from the config
        alone: a route the client made up is "-"."""
        m = self._metrics
        route = row.route or "-"
        m.child(m.requests, route, row.endpoint, row.ingress, str(row.status)).inc()
        m.child(m.request_seconds, route, row.endpoint, row.ingress).observe(row.latency_ms / 1000)
        provider, model = row.provider, row.model
        if provider is None or model is None:
            return
        if row.ttft_ms is not None:
            m.child(m.ttft_seconds, route, provider).observe(row.ttft_ms / 1000)
        for kind, value in (
            ("prompt", row.prompt_tokens),
            ("completion", row.completion_tokens),
            ("cached", row.cached_tokens),
            ("cache_write", row.cache_write_tokens),
            ("reasoning", row.reasoning_tokens),
        ):
            if value:
                m.child(m.tokens, route, provider, model, kind).inc(value)
        if price is not None and (row.cached_tokens or row.cache_write_tokens):
            self._cache_saving(route, provider, model, row, price)
        if row.cost_micro_usd is None:
            m.child(m.cost_unknown, provider, model).inc()
        elif row.cost_micro_usd:
            team = row.team or "-"
            m.child(m.cost_usd, team, route, provider, model).inc(row.cost_micro_usd / 1_000_000)

    def _segments_cost(self, ctx: RequestContext) -> int | None:
        total = 0
        for target, part in ctx.outcome.segments:
            price = self._prices.price(target.provider, target.model)
            if price is None:
                return None
            total += cost_micro_usd(part, price)
        return total

    def _cache_saving(
        self, route: str, provider: str, model: str, row: LedgerRow, price: ModelPrice
    ) -> None:
        m = self._metrics
        saved = price.cache_saving(row.cached_tokens)
        if saved > 0:
            m.child(m.cache_saved_usd, route, provider, model).inc(float(saved))
        premium = price.cache_write_premium(row.cache_write_tokens)
        if premium > 0:
            m.child(m.cache_write_premium_usd, route, provider, model).inc(float(premium))

    def _row(self, ctx: RequestContext, cost: int | None) -> LedgerRow:
        outcome = ctx.outcome
        usage = outcome.usage or Usage()
        target = outcome.served_by
        principal = ctx.principal
        return LedgerRow(
            uid=new_id(),
            ts=ctx.wall_started,
            request_id=ctx.request_id,
            client_request_id=ctx.client_request_id,
            key_name=principal.key_name if principal else None,
            team=principal.team if principal else None,
            route=ctx.route_label,
            endpoint=ctx.endpoint,
            provider=target.provider if target else None,
            model=target.model if target else None,
            status=outcome.status,
            error_class=outcome.error_class,
            stream=ctx.asked.stream,
            prompt_tokens=usage.prompt_tokens,
            cached_tokens=usage.cached_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            completion_tokens=usage.completion_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_micro_usd=cost,
            latency_ms=round(ctx.elapsed() * 1000, 3),
            ttft_ms=None if outcome.ttft_s is None else round(outcome.ttft_s * 1000, 3),
            attempts=len(outcome.attempts),
            attempts_detail=orjson.dumps([a.as_dict() for a in outcome.attempts]).decode(),
            fell_back=outcome.fell_back,
            resumed=outcome.resumed,
            partial_stream=bool(outcome.bytes_sent and outcome.status != 200),
            drill=_drill_mark(ctx),
            usage_estimated=outcome.usage_estimated,
            ingress=ctx.ingress,
            trace_id=ctx.trace_id,
            dropped=outcome.dropped_text,
            resumed_by=_named(outcome.resumed_by),
            cache_hit=outcome.cache == "hit",
            cache_saved_micro_usd=outcome.cache_saved,
        )


def _named(target: Target | None) -> str | None:
    return f"{target.provider}/{target.model}"[:384] if target is not None else None


def _drill_mark(ctx: RequestContext) -> str | None:
    """The drill a row belongs to: its scope header and the faults injected into it."""
    parts = ([ctx.drill] if ctx.drill else []) + ctx.outcome.faults
    return ",".join(parts)[:256] if parts else None


def _access_line(row: LedgerRow) -> None:
    """One line per request, read from its ledger row: key=value words for a terminal, the
    same as fields of the JSON object with `server.log_format: json`."""
    fields = {
        "key": row.key_name or "-",
        "route": row.route or "-",
        "endpoint": row.endpoint,
        "ingress": row.ingress,
        "status": row.status,
        "provider": row.provider or "-",
        "model": row.model or "-",
        "attempts": row.attempts,
        "ms": round(row.latency_ms, 1),
        "cost_micro_usd": row.cost_micro_usd,
    }
    if row.error_class is not None:
        fields["error_class"] = row.error_class
    if row.client_request_id is not None:
        fields["client_request_id"] = row.client_request_id
    words = " ".join(f"{name}={value}" for name, value in fields.items())
    access_log.info(
        "request_id=%s %s", row.request_id, words, extra={"fields": {"request": fields}}
    )
