"""Try the route's targets; the only module that retries or moves a request to another
target. Before the first byte reaches the client, a retryable failure goes to the next
target at once, or back to one already tried after a jittered backoff (at least its
Retry-After) — never past the request's deadline, never beyond the retry budget. Every
outcome feeds the routing state (windows, breakers, cool-downs, headroom)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception

from gateway.errors import (
    AllTargetsFailed,
    AttemptRecord,
    ContextTooLong,
    InvalidRequest,
    Overloaded,
    RateLimited,
    Shed,
    SpilloverError,
    Unsupported,
    UpstreamFailure,
)
from gateway.metrics import GatewayMetrics
from gateway.pipeline.attempt_support import LogThrottle, RetryBudget, cut, share_of, timeouts_of
from gateway.pipeline.context import RequestContext
from gateway.pipeline.headroom import exhausted_for
from gateway.pipeline.hedge import first_answer
from gateway.pipeline.tokens import expected_output
from gateway.providers.base import Provider, UpstreamCall, UpstreamResponse, UpstreamStream
from gateway.state.memory import MemoryState
from gateway.state.redis import RedisState
from gateway.state.windows import Outcome
from policies import routing
from policies.routing import Skip, target_key
from policies.schema import Hedge, Route, Target
from policies.schema_base import Timeouts

log = logging.getLogger("spillover.attempt")
_MIN_ATTEMPT_S = 0.005  # below this much time left, another attempt cannot succeed

State = MemoryState | RedisState


@dataclass(slots=True)
class Served:
    target: Target
    response: UpstreamResponse | None = None
    stream: UpstreamStream | None = None
    events: AsyncIterator[bytes] | None = None
    first_event: bytes = b""
    started: float = 0.0
    elapsed: float = 0.0


class _NoTargetLeft(Exception):
    """Every candidate was skipped or used up; ends the retry loop."""


class AttemptRunner:
    def __init__(
        self,
        providers: dict[str, Provider],
        timeouts: dict[str, Timeouts],
        metrics: GatewayMetrics,
        state: State,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self._providers = providers
        self._timeouts = {name: timeouts_of(t) for name, t in timeouts.items()}
        self._metrics = metrics
        self.state = state
        self._clock = clock
        self._rng = rng or random.Random()
        self._throttle = LogThrottle()
        self._budget = RetryBudget()
        self._hedge_budget = RetryBudget()
        self._shown: dict[Target, str] = {}

    async def run(
        self,
        ctx: RequestContext,
        route: Route,
        targets: list[Target],
        body: dict[str, Any] | None = None,
        continuation: bool = False,
    ) -> Served:
        """Serve `ctx` from `targets`; `body` replaces the client's body (a continuation of
        a broken stream sends the partial answer along)."""
        now = self._clock()
        self._budget.request(ctx.route_name, now, route.retry.budget_window_s)
        keys = [target_key(t) for t in targets]
        views = await self.state.views(keys, now, route.fail_over_when.window_s)
        ordered = routing.order(route, views, self._rng, targets)
        usable, skips = routing.plan(
            route,
            ordered,
            views,
            now,
            ctx.remaining(),
            expected_output(ctx.body, route.typical_output_tokens),
            ctx.stream,
        )
        for skip in skips:
            self._skipped(ctx, skip)
        failures: list[UpstreamFailure] = []
        tries: dict[str, int] = {}
        queue = deque(usable)

        def next_target() -> Target | None:
            # Fresh targets first, then the tried ones again in order.
            for target in queue:
                if tries.get(target_key(target), 0) == 0:
                    return target
            return min(queue, key=lambda t: tries[target_key(t)]) if queue else None

        def should_retry(exc: BaseException) -> bool:
            if not isinstance(exc, UpstreamFailure) or not exc.retryable:
                return False
            target = next_target()
            if exc.error_class not in route.retry.retry_on or target is None:
                return False
            fresh = tries.get(target_key(target), 0) == 0
            if isinstance(exc, Shed) and not fresh:  # the pool decided: only another target
                return False
            if not fresh and (_retry_after(exc) or 0.0) > route.retry.backoff_cap_ms / 1000:
                return False  # a wait longer than the backoff cap: the client gets Retry-After
            remaining = ctx.remaining()
            if remaining is not None and remaining < _MIN_ATTEMPT_S:
                self._metrics.child(self._metrics.deadline_exceeded, ctx.route_name).inc()
                return False
            # The budget guards targets already tried; it never blocks the route's fallbacks.
            allowed = fresh or self._budget.try_retry(route, ctx.route_name, self._clock())
            self._metrics.child(
                self._metrics.retries, ctx.route_name, "allowed" if allowed else "budget_exhausted"
            ).inc()
            return allowed

        def wait_after(failure: BaseException | None) -> float:
            target = next_target()
            if target is None:
                return 0.0
            pause = routing.backoff_seconds(
                tries.get(target_key(target), 0), route.retry, self._rng, _retry_after(failure)
            )
            remaining = ctx.remaining()
            return pause if remaining is None else max(0.0, min(pause, remaining - 0.001))

        async def attempt_once() -> Served:
            while True:
                target = await self._admitted(ctx, route, queue, next_target)
                if target is None:
                    raise _NoTargetLeft
                tries[target_key(target)] = tries.get(target_key(target), 0) + 1
                fresh = sum(1 for t in queue if tries.get(target_key(t), 0) == 0)
                try:
                    return await self._one(ctx, route, target, 1 + fresh, body, continuation)
                except Unsupported:
                    # This target cannot serve this request: a skip, not an attempt.
                    queue.remove(target)
                    continue
                except UpstreamFailure as failure:
                    await on_failure(target, failure)
                    raise

        async def on_failure(target: Target, failure: UpstreamFailure) -> None:
            failures.append(failure)
            if not failure.counts_against_target and not isinstance(failure, Shed):
                tries[target_key(target)] = 0  # one pool replica left rotation, not the pool
            elif target in queue and await self._breaker_opened(target):
                queue.remove(target)

        async def hedged_once(hedge: Hedge) -> Served:
            first = await self._admitted(ctx, route, queue, next_target)
            if first is None:
                raise _NoTargetLeft
            tries[target_key(first)] = 1
            stats = views.get(target_key(first), routing.TargetView()).stats
            return await self._hedged(
                ctx, route, hedge, first, stats, queue, tries, failures, body, continuation
            )

        try:
            # Most requests succeed at once: the retry machinery starts only on a failure.
            try:
                if route.hedge is not None and len(queue) > 1 and not continuation:
                    return await hedged_once(route.hedge)
                return await attempt_once()
            except UpstreamFailure as failure:
                if route.retry.max_attempts <= 1 or not should_retry(failure):
                    raise
                await asyncio.sleep(wait_after(failure))
            retrying = AsyncRetrying(
                stop=lambda s: s.attempt_number >= route.retry.max_attempts - 1,
                wait=lambda s: wait_after(s.outcome.exception() if s.outcome else None),
                retry=retry_if_exception(should_retry),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    return await attempt_once()
        except _NoTargetLeft:
            pass
        except ContextTooLong:
            larger = route.on_context_too_long
            if (
                larger is None
                or continuation
                or ctx.endpoint not in (self._providers[larger.provider].supports)
            ):
                raise
            # A bigger window is the only thing that helps: one attempt there, no retries.
            self._metrics.child(self._metrics.fallbacks, ctx.route_name, "context_too_long").inc()
            return await self._one(ctx, route, larger, 1, body, continuation)
        except UpstreamFailure as failure:
            if not failure.retryable:
                raise
        raise self._all_failed(ctx, failures, skips)

    async def _hedged(
        self,
        ctx: RequestContext,
        route: Route,
        hedge: Hedge,
        first: Target,
        stats: routing.WindowStats,
        queue: deque[Target],
        tries: dict[str, int],
        failures: list[UpstreamFailure],
        body: dict[str, Any] | None,
        continuation: bool,
    ) -> Served:
        """The first attempt, and a second one on the next target if the first has nothing
        by the hedge delay. The first to answer wins; the other is cancelled (its connection
        closed) and both stay in the attempts list as they happened."""
        m = self._metrics
        tasks = {asyncio.create_task(self._one(ctx, route, first, 2, body, continuation)): first}
        done, _ = await asyncio.wait(tasks, timeout=routing.hedge_delay(hedge, stats, ctx.stream))
        second: Target | None = None
        if not done:
            if not self._hedge_budget.try_spend(
                ctx.route_name,
                self._clock(),
                hedge.budget_window_s,
                hedge.budget_ratio,
                hedge.budget_min,
            ):
                m.child(m.hedges, ctx.route_name, "no_budget").inc()
            else:
                second = await self._admitted(
                    ctx,
                    route,
                    queue,
                    lambda: next((t for t in queue if tries.get(target_key(t), 0) == 0), None),
                )
            if second is not None:
                tries[target_key(second)] = 1
                m.child(m.hedges, ctx.route_name, "started").inc()
                tasks[asyncio.create_task(self._one(ctx, route, second, 1, body, continuation))] = (
                    second
                )

        async def failed(target: Target, failure: UpstreamFailure) -> None:
            failures.append(failure)
            if target in queue and await self._breaker_opened(target):
                queue.remove(target)

        winner = await first_answer(ctx, tasks, failed)
        if second is not None:
            outcome = "won" if winner.target == second else "lost"
            m.child(m.hedges, ctx.route_name, outcome).inc()
        return winner

    async def _admitted(
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
            if await self.state.admit(key, self._clock(), route.breaker) != "deny":
                return target
            queue.remove(target)
            view = (await self.state.views([key], self._clock(), 1.0))[key]
            self._skipped(ctx, Skip(target, "breaker_open", view.breaker.open_until))
        return None

    async def _one(
        self,
        ctx: RequestContext,
        route: Route,
        target: Target,
        share: int = 1,
        request_body: dict[str, Any] | None = None,
        continuation: bool = False,
    ) -> Served:
        """One attempt. With a deadline, it gets 1/`share` of what remains, so the targets
        still untried keep their turn within the budget."""
        provider = self._providers[target.provider]
        source = ctx.body if request_body is None else request_body
        body = source if source.get("model") == target.model else {**source, "model": target.model}
        ttft_budget = route.ttft_budget_ms / 1000 if ctx.stream and route.ttft_budget_ms else None
        call = UpstreamCall(
            endpoint=ctx.endpoint,
            body=body,
            model=target.model,
            stream=ctx.stream,
            client_wants_usage=ctx.client_wants_usage,
            request_id=ctx.request_id,
            timeouts=cut(
                self._timeouts[target.provider], share_of(ctx.remaining(), share), ttft_budget
            ),
            continuation=continuation,
            prompt_tokens=ctx.prompt_estimate or 0,
            output_tokens=expected_output(ctx.body, route.typical_output_tokens),
            priority=ctx.priority,
            allow_cap_context=route.allow_cap_context,
            cache_hint=ctx.cache_hint,
            route=ctx.route_name,
            drill=ctx.drill,
            faults=ctx.faults,
        )
        started = time.perf_counter()
        served = Served(target, started=started)
        try:
            result = await provider.send(call)
            if isinstance(result, UpstreamStream):
                served.stream = result
                served.events = result.__aiter__()
                try:
                    served.first_event = await served.events.__anext__()
                except StopAsyncIteration:
                    await result.aclose()
                    raise UpstreamFailure("upstream stream was empty") from None
                except BaseException:
                    await result.aclose()
                    raise
            else:
                served.response = result
        except Unsupported as skip:
            self._skipped(ctx, Skip(target, "unsupported", 0.0), skip.message)
            raise
        except UpstreamFailure as failure:
            await self._failed(ctx, route, target, failure, time.perf_counter() - started)
            raise
        served.elapsed = time.perf_counter() - started
        ctx.attempts.append(
            AttemptRecord(target.provider, target.model, "ok", None, 200, "", served.elapsed * 1000)
        )
        return served

    async def settle(self, ctx: RequestContext, route: Route, served: Served) -> None:
        """The success bookkeeping, done once the first bytes are on their way to the
        client: windows and breaker, provider headroom, metrics."""
        target, elapsed = served.target, served.elapsed
        key = target_key(target)
        usage = served.response.usage if served.response else None
        breaker = await self.state.record(
            key,
            Outcome(
                ok=True,
                ttft_s=elapsed if ctx.stream else None,
                latency_s=None if ctx.stream else elapsed,
                output_tokens=usage.completion_tokens if usage else 0,
            ),
            self._clock(),
            route.fail_over_when,
            route.breaker,
        )
        self._show_breaker(target, breaker)
        headers = (served.response or served.stream).headers  # type: ignore[union-attr]
        wait = exhausted_for(headers, self._clock())
        if wait:
            await self.state.limit_headroom(key, self._clock() + wait)
        m = self._metrics
        m.child(m.attempts, target.provider, target.model, "ok", "").inc()
        m.child(m.attempt_seconds, target.provider, target.model).observe(elapsed)
        first = next((a for a in ctx.attempts if a.outcome == "failed"), None)
        if first is not None:
            m.child(m.fallbacks, ctx.route_name, first.error_class or "").inc()

    async def _failed(
        self,
        ctx: RequestContext,
        route: Route,
        target: Target,
        failure: UpstreamFailure,
        elapsed: float,
    ) -> None:
        if not failure.private:
            await self._remember(route, target, failure)
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
        self._metrics.child(
            self._metrics.attempts, target.provider, target.model, "failed", failure.error_class
        ).inc()
        self._log_failure(ctx, target, failure)

    async def _remember(self, route: Route, target: Target, failure: UpstreamFailure) -> None:
        """What every later request to this target should know of this failure."""
        key = target_key(target)
        now = self._clock()
        # A failure that is the request's fault says nothing about the target.
        breaker = await self.state.record(
            key,
            Outcome(
                ok=False,
                rate_limited=isinstance(failure, RateLimited),
                counts=failure.retryable and failure.counts_against_target,
            ),
            now,
            route.fail_over_when,
            route.breaker,
        )
        self._show_breaker(target, breaker)
        if (
            isinstance(failure, RateLimited | Overloaded)
            and failure.retry_after
            and failure.counts_against_target
        ):
            await self.state.cool_down(key, now + failure.retry_after)

    def _show_breaker(self, target: Target, breaker: routing.BreakerState) -> None:
        if self._shown.get(target) == breaker.phase:
            return
        self._shown[target] = breaker.phase
        value = {"closed": 0, "half_open": 1, "open": 2}[breaker.phase]
        self._metrics.child(self._metrics.breaker_state, target.provider, target.model).set(value)

    async def _breaker_opened(self, target: Target) -> bool:
        key = target_key(target)
        view = (await self.state.views([key], self._clock(), 1.0))[key]
        return view.breaker.phase == "open" or view.cooldown_until > self._clock()

    def stream_finished(
        self, target: Target, ttft_s: float, total_s: float, output_tokens: int
    ) -> None:
        """Teach the local window this target's time per output token."""
        window = (self.state.local if isinstance(self.state, RedisState) else self.state).window(
            target_key(target)
        )
        window.add(
            Outcome(
                ok=True, counts=False, ttft_s=ttft_s, latency_s=total_s, output_tokens=output_tokens
            ),
            self._clock(),
        )

    def _skipped(self, ctx: RequestContext, skip: Skip, why: str = "") -> None:
        target = skip.target
        until = max(0.0, skip.until - self._clock()) if skip.until else 0.0
        detail = why or skip.reason + (f" for {until:.1f}s" if until else "")
        ctx.attempts.append(
            AttemptRecord(target.provider, target.model, "skipped", skip.reason, None, detail, 0.0)
        )
        ctx.skips.append(skip)
        self._metrics.child(
            self._metrics.skips, ctx.route_name, target.provider, target.model, skip.reason
        ).inc()

    def _all_failed(
        self, ctx: RequestContext, failures: list[UpstreamFailure], skips: list[Skip]
    ) -> SpilloverError:
        if not failures and ctx.skips and all(s.reason == "unsupported" for s in ctx.skips):
            # No target could take this request as sent: the request, not the route, is wrong.
            reasons = "; ".join(a.detail for a in ctx.attempts if a.error_class == "unsupported")
            return InvalidRequest(
                f"no target of route '{ctx.route_name}' can serve this: {reasons}"
            )
        now = self._clock()
        waits = [s.until - now for s in ctx.skips if s.until > now]
        deadline = any(s.reason == "deadline" for s in ctx.skips) or (
            ctx.remaining() is not None and (ctx.remaining() or 0.0) < _MIN_ATTEMPT_S
        )
        if deadline:
            self._metrics.child(self._metrics.deadline_exceeded, ctx.route_name).inc()
        return AllTargetsFailed(
            list(ctx.attempts),
            failures,
            skipped_retry_after=min(waits) if waits else None,
            deadline=deadline,
        )

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


def _retry_after(failure: BaseException | None) -> float | None:
    """The wait an upstream asked for with its failure, if any."""
    return failure.retry_after if isinstance(failure, RateLimited | Overloaded) else None
