"""The last stage: every request, whatever its outcome, is counted exactly once here —
metrics, the access log line and (when configured) the ledger row."""

from __future__ import annotations

import logging
from typing import Protocol

from gateway.context import RequestContext
from gateway.metrics import GatewayMetrics

access_log = logging.getLogger("spillover.access")


class LedgerSink(Protocol):
    def add(self, ctx: RequestContext) -> None: ...


class Accountant:
    def __init__(
        self, metrics: GatewayMetrics, ledger: LedgerSink | None = None, log_access: bool = False
    ) -> None:
        self._metrics = metrics
        self._ledger = ledger
        self._log_access = log_access

    def record(self, ctx: RequestContext) -> None:
        m = self._metrics
        route = ctx.route_name or "-"
        m.child(m.requests, route, ctx.endpoint, str(ctx.status)).inc()
        m.child(m.request_seconds, route, ctx.endpoint).observe(ctx.elapsed())
        target = ctx.served_by
        if target is not None:
            if ctx.ttft_s is not None:
                m.child(m.ttft_seconds, route, target.provider).observe(ctx.ttft_s)
            usage = ctx.usage
            if usage is not None:
                for kind, value in (
                    ("prompt", usage.prompt_tokens),
                    ("completion", usage.completion_tokens),
                    ("cached", usage.cached_tokens),
                    ("cache_write", usage.cache_write_tokens),
                    ("reasoning", usage.reasoning_tokens),
                ):
                    if value:
                        m.child(m.tokens, route, target.provider, target.model, kind).inc(value)
        if self._ledger is not None:
            self._ledger.add(ctx)
        if self._log_access:
            access_log.info(
                "request_id=%s key=%s route=%s endpoint=%s status=%s provider=%s attempts=%d "
                "ms=%.1f",
                ctx.request_id,
                ctx.principal.key_name if ctx.principal else "-",
                route,
                ctx.endpoint,
                ctx.status,
                target.provider if target else "-",
                len(ctx.attempts),
                ctx.elapsed() * 1000,
            )
