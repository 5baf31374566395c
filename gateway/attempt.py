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
_LOG_EVERY_S = 5.0


class _LogThrottle:
    """One warning per (target, error class) per interval, with the count it stood for, so
    an outage is visible in the log without flooding it."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str, str], tuple[float, int]] = {}

    def allow(self, key: tuple[str, str, str]) -> int:
        """0 to stay quiet, else how many failures this line reports."""
        now = time.monotonic()
        last, suppressed = self._last.get(key, (0.0, 0))
        if now - last < _LOG_EVERY_S:
            self._last[key] = (last, suppressed + 1)
            return 0
        self._last[key] = (now, 0)
        return suppressed + 1


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
        self._throttle = _LogThrottle()

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
                self._log_failure(ctx, target, failure)
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

    def _log_failure(self, ctx: RequestContext, target: Target, failure: UpstreamFailure) -> None:
        count = self._throttle.allow((target.provider, target.model, failure.error_class))
        if count:
            log.warning(
                "attempt failed: provider=%s model=%s error=%s status=%s route=%s "
                "request_id=%s failures_since_last_line=%d",
                target.provider,
                target.model,
                failure.error_class,
                failure.upstream_status,
                ctx.route_name,
                ctx.request_id,
                count,
            )
