"""Try the candidate targets in order. The only place that moves a request on to another
target: a retryable failure before the first byte reached the client goes to the next
candidate; anything else ends the request."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.context import RequestContext
from gateway.errors import AllTargetsFailed, AttemptRecord, UpstreamFailure
from gateway.metrics import GatewayMetrics
from gateway.providers.base import (
    AttemptTimeouts,
    Provider,
    UpstreamCall,
    UpstreamResponse,
    UpstreamStream,
)
from policies.schema import Target, Timeouts

log = logging.getLogger("spillover.attempt")


@dataclass(slots=True)
class Served:
    target: Target
    response: UpstreamResponse | None = None
    stream: UpstreamStream | None = None
    events: AsyncIterator[bytes] | None = None
    first_event: bytes = b""


def _timeouts(config: Timeouts) -> AttemptTimeouts:
    return AttemptTimeouts(
        connect=config.connect_ms / 1000,
        first_byte=config.first_byte_ms / 1000,
        idle=config.idle_ms / 1000,
        total=config.total_ms / 1000,
    )


class AttemptRunner:
    def __init__(
        self,
        providers: dict[str, Provider],
        timeouts: dict[str, Timeouts],
        metrics: GatewayMetrics,
    ) -> None:
        self._providers = providers
        self._timeouts = {name: _timeouts(t) for name, t in timeouts.items()}
        self._metrics = metrics

    async def run(self, ctx: RequestContext, targets: list[Target]) -> Served:
        failures: list[UpstreamFailure] = []
        metrics = self._metrics
        for target in targets:
            provider = self._providers[target.provider]
            body = ctx.body
            if body.get("model") != target.model:
                body = {**body, "model": target.model}
            call = UpstreamCall(
                endpoint=ctx.endpoint,
                body=body,
                model=target.model,
                stream=ctx.stream,
                client_wants_usage=ctx.client_wants_usage,
                request_id=ctx.request_id,
                timeouts=self._timeouts[target.provider],
            )
            started = time.perf_counter()
            try:
                result = await provider.send(call)
                served = Served(target)
                if isinstance(result, UpstreamStream):
                    served.stream = result
                    served.events = result.__aiter__()
                    try:
                        served.first_event = await served.events.__anext__()
                    except BaseException:
                        await result.aclose()
                        raise
                else:
                    served.response = result
            except UpstreamFailure as failure:
                elapsed = time.perf_counter() - started
                failures.append(failure)
                ctx.attempts.append(
                    AttemptRecord(
                        target.provider,
                        target.model,
                        "failed",
                        failure.error_class,
                        failure.upstream_status,
                        failure.message,
                        elapsed * 1000,
                    )
                )
                metrics.child(
                    metrics.attempts, target.provider, target.model, "failed", failure.error_class
                ).inc()
                log.warning(
                    "attempt failed: route=%s provider=%s model=%s error=%s status=%s "
                    "request_id=%s",
                    ctx.route_name,
                    target.provider,
                    target.model,
                    failure.error_class,
                    failure.upstream_status,
                    ctx.request_id,
                )
                if not failure.retryable:
                    raise
                continue
            except StopAsyncIteration:
                # A stream that ended before its first event: a failed attempt like any other.
                empty = UpstreamFailure("upstream stream was empty")
                failures.append(empty)
                ctx.attempts.append(
                    AttemptRecord(
                        target.provider,
                        target.model,
                        "failed",
                        empty.error_class,
                        None,
                        empty.message,
                        (time.perf_counter() - started) * 1000,
                    )
                )
                continue
            elapsed = time.perf_counter() - started
            ctx.attempts.append(
                AttemptRecord(target.provider, target.model, "ok", None, 200, "", elapsed * 1000)
            )
            metrics.child(metrics.attempts, target.provider, target.model, "ok", "").inc()
            metrics.child(metrics.attempt_seconds, target.provider, target.model).observe(elapsed)
            if failures:
                metrics.child(metrics.fallbacks, ctx.route_name, failures[0].error_class).inc()
            return served
        raise AllTargetsFailed(list(ctx.attempts), failures)
