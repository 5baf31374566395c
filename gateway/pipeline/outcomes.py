"""What every attempt's outcome teaches the routing state for every later request:
windows and breakers, cool-downs after a Retry-After, provider headroom, each target's
latency — and the breaker gate that reads them back. One object per config generation."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from gateway.attempt_record import AttemptRecord
from gateway.errors import Overloaded, UpstreamFailure, UpstreamRateLimited
from gateway.logs import LogThrottle
from gateway.metrics import GatewayMetrics
from gateway.pipeline.context import RequestContext
from gateway.pipeline.headroom import exhausted_for
from gateway.pipeline.served import Served
from gateway.state.contracts import RoutingState
from gateway.state.windows import AttemptSample
from policies import routing
from policies.route import Route, Target
from policies.routing import Skip, target_key

log = logging.getLogger("spillover.attempt")


class OutcomeLearner:
    def __init__(
        self,
        state: RoutingState,
        metrics: GatewayMetrics,
        clock: Callable[[], float],
        on_breaker: Callable[[Target, str, str], None] | None = None,
    ) -> None:
        self.state = state
        self.metrics = metrics
        self.clock = clock
        self._on_breaker = on_breaker  # (target, new phase, reason): the console's incidents
        self._throttle = LogThrottle()
        self._shown: dict[Target, str] = {}

    async def admitted(
        self,
        ctx: RequestContext,
        route: Route,
        queue: deque[Target],
        next_target: Callable[[], Target | None],
    ) -> Target | None:
        """The next target whose breaker lets this request through (a half-open breaker
        lets only a few probes); refused ones leave the queue as skips."""
        while (target := next_target()) is not None:
            key = target_key(target)
            if await self.state.admit(key, self.clock(), route.breaker) != "deny":
                return target
            queue.remove(target)
            view = (await self.state.views([key], self.clock(), 1.0))[key]
            self.skipped(ctx, Skip(target, "breaker_open", view.breaker.open_until))
        return None

    async def succeeded(self, ctx: RequestContext, route: Route, served: Served) -> None:
        """The success bookkeeping, done once the first bytes are on their way to the
        client: windows and breaker, provider headroom, metrics."""
        target, elapsed = served.target, served.elapsed
        key = target_key(target)
        usage = served.response.usage if served.response else None
        breaker = await self.state.record(
            key,
            AttemptSample(
                ok=True,
                ttft_s=elapsed if ctx.asked.stream else None,
                latency_s=None if ctx.asked.stream else elapsed,
                output_tokens=usage.completion_tokens if usage else 0,
            ),
            self.clock(),
            route.fail_over_when,
            route.breaker,
        )
        self._show_breaker(target, breaker)
        headers = (served.response or served.stream).headers  # type: ignore[union-attr]
        wait = exhausted_for(headers, self.clock())
        if wait:
            await self.state.limit_headroom(key, self.clock() + wait)
        m = self.metrics
        m.child(m.attempts, target.provider, target.model, "ok", "").inc()
        m.child(m.attempt_seconds, target.provider, target.model).observe(elapsed)
        first = next((a for a in ctx.outcome.attempts if a.outcome == "failed"), None)
        if first is not None:
            m.child(m.fallbacks, ctx.route_name, first.error_class or "").inc()

    async def failed(
        self,
        ctx: RequestContext,
        route: Route,
        target: Target,
        failure: UpstreamFailure,
        elapsed: float,
    ) -> None:
        if not failure.private:
            await self._remember(route, target, failure)
        ctx.outcome.attempts.append(
            AttemptRecord.failed(
                target.provider,
                target.model,
                failure.error_class,
                failure.upstream_status,
                failure.message,
                elapsed * 1000,
            )
        )
        self.metrics.child(
            self.metrics.attempts, target.provider, target.model, "failed", failure.error_class
        ).inc()
        self._log_failure(ctx, target, failure)

    async def _remember(self, route: Route, target: Target, failure: UpstreamFailure) -> None:
        """What every later request to this target should know of this failure."""
        key = target_key(target)
        now = self.clock()
        # A failure that is the request's fault says nothing about the target.
        breaker = await self.state.record(
            key,
            AttemptSample(
                ok=False,
                rate_limited=isinstance(failure, UpstreamRateLimited),
                counts=failure.retryable and failure.counts_against_target,
            ),
            now,
            route.fail_over_when,
            route.breaker,
        )
        self._show_breaker(target, breaker)
        if (
            isinstance(failure, UpstreamRateLimited | Overloaded)
            and failure.retry_after
            and failure.counts_against_target
        ):
            await self.state.cool_down(key, now + failure.retry_after)

    def _show_breaker(self, target: Target, breaker: routing.BreakerState) -> None:
        shown = self._shown.get(target)
        if shown == breaker.phase:
            return
        self._shown[target] = breaker.phase
        # A target first seen closed was closed all along: no change to tell.
        if self._on_breaker is not None and breaker.phase != (shown or "closed"):
            self._on_breaker(target, breaker.phase, breaker.reason)
        value = {"closed": 0, "half_open": 1, "open": 2}[breaker.phase]
        self.metrics.child(self.metrics.breaker_state, target.provider, target.model).set(value)

    async def breaker_opened(self, target: Target) -> bool:
        key = target_key(target)
        view = (await self.state.views([key], self.clock(), 1.0))[key]
        return view.breaker.phase == "open" or view.cooldown_until > self.clock()

    def stream_finished(
        self, target: Target, ttft_s: float, total_s: float, output_tokens: int
    ) -> None:
        """Teach the local window this target's time per output token."""
        window = self.state.local_window(target_key(target))
        window.add(
            AttemptSample(
                ok=True, counts=False, ttft_s=ttft_s, latency_s=total_s, output_tokens=output_tokens
            ),
            self.clock(),
        )

    def skipped(self, ctx: RequestContext, skip: Skip, why: str = "") -> None:
        target = skip.target
        until = max(0.0, skip.until - self.clock()) if skip.until else 0.0
        detail = why or skip.reason + (f" for {until:.1f}s" if until else "")
        ctx.outcome.attempts.append(
            AttemptRecord.skipped(target.provider, target.model, skip.reason, detail)
        )
        ctx.outcome.skips.append(skip)
        self.metrics.child(
            self.metrics.skips, ctx.route_name, target.provider, target.model, skip.reason
        ).inc()

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
