"""The sequence of attempts for one request; the only place that retries or moves a request to
another target. Before the first byte reaches the client, a retryable failure goes to the
next fresh target at once, or back to one already tried after a jittered backoff (at least
its Retry-After) — never past the request's deadline, never beyond the retry budget.

Read `run()` top to bottom: the first attempt (hedged when the route says so), then the
tenacity loop that only starts on a failure, then the ways a sequence ends."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception

from gateway.errors import (
    AllTargetsFailed,
    ContextTooLong,
    InvalidRequest,
    Overloaded,
    Shed,
    SpilloverError,
    Unsupported,
    UpstreamFailure,
    UpstreamRateLimited,
)
from gateway.metrics import GatewayMetrics
from gateway.pipeline.context import RequestContext
from gateway.pipeline.decide import Decision
from gateway.pipeline.hedge import first_answer
from gateway.pipeline.retry_budget import RetryBudget
from gateway.pipeline.served import Served
from policies import routing
from policies.route import Hedge, Route, Target
from policies.routing import target_key
from policies.schema_base import Endpoint

MIN_ATTEMPT_S = 0.005  # below this much time left, another attempt cannot succeed


class _NoTargetLeft(Exception):
    """Every candidate was skipped or used up; ends the retry loop."""


# One attempt: (ctx, route, target, share of the time left, body, continuation).
Attempt = Callable[
    [RequestContext, Route, Target, int, dict[str, Any] | None, bool], Coroutine[Any, Any, Served]
]
# The next target whose breaker lets the request through, refused ones leaving the queue.
Admitted = Callable[
    [RequestContext, Route, deque[Target], Callable[[], Target | None]],
    Awaitable[Target | None],
]


@dataclass(frozen=True, slots=True)
class SequenceParts:
    """What a sequence calls: the attempt stage's pieces, built once per generation."""

    attempt: Attempt
    admitted: Admitted
    breaker_opened: Callable[[Target], Awaitable[bool]]
    supports: Callable[[str, Endpoint], bool]  # (provider, endpoint)
    metrics: GatewayMetrics
    retry_budget: RetryBudget
    hedge_budget: RetryBudget
    clock: Callable[[], float]
    rng: random.Random


class AttemptSequence:
    """One request's walk over its usable targets: which is next, whether to retry, how long
    to wait. Its state — the queue, the tries per target, the failures — lives here alone."""

    def __init__(
        self,
        parts: SequenceParts,
        ctx: RequestContext,
        route: Route,
        decided: Decision,
        body: dict[str, Any] | None,
        continuation: bool,
    ) -> None:
        self.parts = parts
        self.ctx = ctx
        self.route = route
        self.queue = deque(decided.usable)
        self.views = decided.views
        self.body = body
        self.continuation = continuation
        self.tries: dict[str, int] = {}
        self.failures: list[UpstreamFailure] = []

    async def run(self) -> Served:
        route = self.route
        try:
            # Most requests succeed at once: the retry machinery starts only on a failure.
            try:
                if route.hedge is not None and len(self.queue) > 1 and not self.continuation:
                    return await self._hedged(route.hedge)
                return await self._attempt()
            except UpstreamFailure as failure:
                if route.retry.max_attempts <= 1 or not self._should_retry(failure):
                    raise
                await asyncio.sleep(self._wait_after(failure))
            retrying = AsyncRetrying(
                stop=lambda s: s.attempt_number >= route.retry.max_attempts - 1,
                wait=lambda s: self._wait_after(s.outcome.exception() if s.outcome else None),
                retry=retry_if_exception(self._should_retry),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    return await self._attempt()
        except _NoTargetLeft:
            pass
        except ContextTooLong as too_long:
            return await self._larger_window(too_long)
        except UpstreamFailure as failure:
            if not failure.retryable:
                raise
        raise all_failed(self.ctx, self.failures, self.parts.metrics, self.parts.clock())

    def _tried(self, target: Target) -> int:
        return self.tries.get(target_key(target), 0)

    def _next_target(self) -> Target | None:
        """Fresh targets first, then the tried ones again, least tried first."""
        for target in self.queue:
            if self._tried(target) == 0:
                return target
        return min(self.queue, key=self._tried) if self.queue else None

    def _next_fresh(self) -> Target | None:
        return next((t for t in self.queue if self._tried(t) == 0), None)

    async def _attempt(self) -> Served:
        """One attempt at the next target the breakers let through; an Unsupported target
        is a skip, not an attempt, and the next one is tried."""
        while True:
            target = await self.parts.admitted(self.ctx, self.route, self.queue, self._next_target)
            if target is None:
                raise _NoTargetLeft
            self.tries[target_key(target)] = self._tried(target) + 1
            fresh = sum(1 for t in self.queue if self._tried(t) == 0)
            try:
                return await self.parts.attempt(
                    self.ctx, self.route, target, 1 + fresh, self.body, self.continuation
                )
            except Unsupported:
                self.queue.remove(target)
                continue
            except UpstreamFailure as failure:
                await self._failed(target, failure)
                raise

    async def _failed(self, target: Target, failure: UpstreamFailure) -> None:
        self.failures.append(failure)
        if not failure.counts_against_target and not isinstance(failure, Shed):
            self.tries[target_key(target)] = 0  # one pool replica left rotation, not the pool
        elif target in self.queue and await self.parts.breaker_opened(target):
            self.queue.remove(target)

    def _should_retry(self, exc: BaseException) -> bool:
        if not isinstance(exc, UpstreamFailure) or not exc.retryable:
            return False
        route, ctx, parts = self.route, self.ctx, self.parts
        target = self._next_target()
        if exc.error_class not in route.retry.retry_on or target is None:
            return False
        fresh = self._tried(target) == 0
        if isinstance(exc, Shed) and not fresh:  # the pool decided: only another target
            return False
        if not fresh and (retry_after(exc) or 0.0) > route.retry.backoff_cap_ms / 1000:
            return False  # a wait longer than the backoff cap: the client gets Retry-After
        remaining = ctx.remaining()
        if remaining is not None and remaining < MIN_ATTEMPT_S:
            parts.metrics.child(parts.metrics.deadline_exceeded, ctx.route_name).inc()
            return False
        # The budget guards targets already tried; it never blocks the route's fallbacks.
        allowed = fresh or parts.retry_budget.try_retry(route, ctx.route_name, parts.clock())
        parts.metrics.child(
            parts.metrics.retries, ctx.route_name, "allowed" if allowed else "budget_exhausted"
        ).inc()
        return allowed

    def _wait_after(self, failure: BaseException | None) -> float:
        target = self._next_target()
        if target is None:
            return 0.0
        pause = routing.backoff_seconds(
            self._tried(target), self.route.retry, self.parts.rng, retry_after(failure)
        )
        remaining = self.ctx.remaining()
        return pause if remaining is None else max(0.0, min(pause, remaining - 0.001))

    async def _hedged(self, hedge: Hedge) -> Served:
        """The first attempt, and a second one on the next fresh target if the first has
        nothing by the hedge delay. The first to answer wins; the other is cancelled (its
        connection closed) and both stay in the attempts list as they happened. A failure
        takes the same path as any other attempt's (`_failed`)."""
        parts, ctx, route = self.parts, self.ctx, self.route
        first = await parts.admitted(ctx, route, self.queue, self._next_target)
        if first is None:
            raise _NoTargetLeft
        self.tries[target_key(first)] = 1
        attempt = parts.attempt
        tasks = {
            asyncio.create_task(attempt(ctx, route, first, 2, self.body, self.continuation)): first
        }
        stats = self.views.get(target_key(first), routing.TargetView()).stats
        done, _ = await asyncio.wait(
            tasks, timeout=routing.hedge_delay(hedge, stats, ctx.asked.stream)
        )
        second = None if done else await self._hedge_target(hedge)
        m = parts.metrics
        if second is not None:
            self.tries[target_key(second)] = 1
            m.child(m.hedges, ctx.route_name, "started").inc()
            task = asyncio.create_task(attempt(ctx, route, second, 1, self.body, self.continuation))
            tasks[task] = second
        winner = await first_answer(ctx, tasks, self._failed)
        if second is not None:
            outcome = "won" if winner.target == second else "lost"
            m.child(m.hedges, ctx.route_name, outcome).inc()
        return winner

    async def _hedge_target(self, hedge: Hedge) -> Target | None:
        parts, ctx = self.parts, self.ctx
        spent = parts.hedge_budget.try_spend(
            ctx.route_name,
            parts.clock(),
            hedge.budget_window_s,
            hedge.budget_ratio,
            hedge.budget_min,
        )
        if not spent:
            parts.metrics.child(parts.metrics.hedges, ctx.route_name, "no_budget").inc()
            return None
        return await parts.admitted(ctx, self.route, self.queue, self._next_fresh)

    async def _larger_window(self, too_long: ContextTooLong) -> Served:
        """A prompt over a target's window: the route's larger-context target when it names
        one; else each target not tried yet, in order (another model may hold it)."""
        larger = self.route.on_context_too_long
        ctx, parts = self.ctx, self.parts
        if self.continuation:
            raise too_long
        metrics = parts.metrics
        if larger is not None:
            if not parts.supports(larger.provider, ctx.upstream_endpoint):
                raise too_long
            metrics.child(metrics.fallbacks, ctx.route_name, "context_too_long").inc()
            return await parts.attempt(ctx, self.route, larger, 1, self.body, False)
        while target := await parts.admitted(ctx, self.route, self.queue, self._next_fresh):
            self.tries[target_key(target)] = 1
            try:
                served = await parts.attempt(ctx, self.route, target, 1, self.body, False)
            except Unsupported:
                self.queue.remove(target)
                continue
            except ContextTooLong as again:
                too_long = again
                continue
            except UpstreamFailure as failure:
                await self._failed(target, failure)
                if not failure.retryable:
                    raise
                continue
            metrics.child(metrics.fallbacks, ctx.route_name, "context_too_long").inc()
            return served
        raise too_long


def retry_after(failure: BaseException | None) -> float | None:
    """The wait an upstream asked for with its failure, if any."""
    return failure.retry_after if isinstance(failure, UpstreamRateLimited | Overloaded) else None


def all_failed(
    ctx: RequestContext, failures: list[UpstreamFailure], metrics: GatewayMetrics, now: float
) -> SpilloverError:
    """How a sequence that served nothing is answered: the request's own fault when no
    target could take it as sent; else every attempt listed, with the shortest wait."""
    if (
        not failures
        and ctx.outcome.skips
        and all(s.reason == "unsupported" for s in ctx.outcome.skips)
    ):
        # No target could take this request as sent: the request, not the route, is wrong.
        reasons = "; ".join(
            a.detail for a in ctx.outcome.attempts if a.error_class == "unsupported"
        )
        return InvalidRequest(f"no target of route '{ctx.route_name}' can serve this: {reasons}")
    waits = [s.until - now for s in ctx.outcome.skips if s.until > now]
    deadline = any(s.reason == "deadline" for s in ctx.outcome.skips) or (
        ctx.remaining() is not None and (ctx.remaining() or 0.0) < MIN_ATTEMPT_S
    )
    if deadline:
        metrics.child(metrics.deadline_exceeded, ctx.route_name).inc()
    return AllTargetsFailed(
        list(ctx.outcome.attempts),
        failures,
        skipped_retry_after=min(waits) if waits else None,
        deadline=deadline,
    )
