"""The attempt stage: take the decide stage's order of targets, hand it to the attempt
sequence (`sequence.py`, the only place that retries), and make each single attempt —
the upstream call, its share of the deadline, and what its outcome teaches the routing state
(windows, breakers, cool-downs, headroom) for every later request."""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway import tracing
from gateway.accounting.pricing import ModelPrice
from gateway.errors import (
    AllTargetsFailed,
    AttemptRecord,
    InvalidRequest,
    Overloaded,
    RateLimited,
    SpilloverError,
    Unsupported,
    UpstreamFailure,
)
from gateway.metrics import GatewayMetrics
from gateway.pipeline import decide
from gateway.pipeline.attempt_support import LogThrottle, RetryBudget, cut, share_of, timeouts_of
from gateway.pipeline.context import RequestContext
from gateway.pipeline.headroom import exhausted_for
from gateway.pipeline.sequence import MIN_ATTEMPT_S, AttemptSequence
from gateway.pipeline.tokens import expected_output
from gateway.providers.base import (
    NativeRequest,
    Provider,
    UpstreamCall,
    UpstreamResponse,
    UpstreamStream,
)
from gateway.providers.translate.chat_form import REASONING_SETTINGS
from gateway.state.contracts import RoutingState
from gateway.state.windows import Outcome
from gateway.tracing import Tracing
from policies import routing
from policies.route import Route, Target
from policies.routing import Skip, target_key
from policies.schema import TracingConfig
from policies.schema_base import Timeouts

log = logging.getLogger("spillover.attempt")


@dataclass(slots=True)
class Served:
    target: Target
    response: UpstreamResponse | None = None
    stream: UpstreamStream | None = None
    events: AsyncIterator[bytes] | None = None
    first_event: bytes = b""
    started: float = 0.0
    elapsed: float = 0.0
    # What of the client's request this target was served without (route `untranslatable:
    # drop`); empty when nothing was left out.
    dropped: list[str] = field(default_factory=list)


class AttemptRunner:
    def __init__(
        self,
        providers: dict[str, Provider],
        timeouts: dict[str, Timeouts],
        metrics: GatewayMetrics,
        state: RoutingState,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        price_of: Callable[[str, str], ModelPrice | None] | None = None,
        reasons: Callable[[str, str], bool] | None = None,
        tracing: Tracing | None = None,
        on_breaker: Callable[[Target, str, str], None] | None = None,
    ) -> None:
        self.providers = providers
        self._on_breaker = on_breaker  # (target, new phase, reason): the console's incidents
        self.tracing = tracing or Tracing(TracingConfig())
        self._timeouts = {name: timeouts_of(t) for name, t in timeouts.items()}
        self.metrics = metrics
        self.state = state
        self.clock = clock
        self._price_of = price_of
        self._reasons = reasons  # (provider, model): takes a reasoning effort
        self.rng = rng or random.Random()
        self._throttle = LogThrottle()
        self.retry_budget = RetryBudget()
        self.hedge_budget = RetryBudget()
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
        now = self.clock()
        self.retry_budget.request(ctx.route_name, now, route.retry.budget_window_s)
        decided = await decide.order(
            ctx, route, targets, self.state, now, self.rng, self._cost_of(route)
        )
        for skip in decided.skips:
            self._skipped(ctx, skip)
        return await AttemptSequence(self, ctx, route, decided, body, continuation).run()

    def _cost_of(self, route: Route) -> Callable[[Target], float | None] | None:
        """`lowest_cost` orders by the prices accounting charges: a 1,000-token prompt and
        the route's typical output at each target."""
        price_of = self._price_of
        if price_of is None or route.strategy != "lowest_cost":
            return None

        def cost(target: Target) -> float | None:
            price = price_of(target.provider, target.model)
            if price is None:
                return None
            return float(price.per_request(1_000, route.typical_output_tokens))

        return cost

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
            self._skipped(ctx, Skip(target, "breaker_open", view.breaker.open_until))
        return None

    async def one(
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
        provider = self.providers[target.provider]
        source = ctx.body if request_body is None else request_body
        body = source if source.get("model") == target.model else {**source, "model": target.model}
        ttft_budget = route.ttft_budget_ms / 1000 if ctx.stream and route.ttft_budget_ms else None
        call = UpstreamCall(
            endpoint=ctx.upstream_endpoint,
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
            call.native = _native_for(ctx, route, provider, continuation)
            if call.native is None:
                self._translated(ctx, target, call, served)
            with self.tracing.attempt(
                ctx.endpoint, target.provider, target.model, provider.address
            ) as span:
                try:
                    await _send(provider, call, served)
                except UpstreamFailure as failure:
                    tracing.failed(span, failure.error_class)
                    raise
        except Unsupported as skip:
            self._skipped(ctx, Skip(target, "unsupported", 0.0), skip.message)
            raise
        except UpstreamFailure as failure:
            await self._failed(ctx, route, target, failure, time.perf_counter() - started)
            raise
        served.elapsed = time.perf_counter() - started
        ctx.attempts.append(AttemptRecord.ok(target.provider, target.model, served.elapsed * 1000))
        return served

    def _translated(
        self, ctx: RequestContext, target: Target, call: UpstreamCall, served: Served
    ) -> None:
        """A translated request: the client's reasoning settings become the target's effort
        where the target reasons; whatever else could not be carried, it is served without."""
        effort = ctx.reasoning_effort
        carried: frozenset[str] = frozenset()
        reasons = self._reasons
        if effort and reasons is not None and reasons(target.provider, target.model):
            call.body = {**call.body, "reasoning_effort": effort}
            carried = REASONING_SETTINGS
        served.dropped = [o.where for o in ctx.untranslatable if o.where not in carried]

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
            AttemptRecord.failed(target.provider, target.model, failure, elapsed * 1000)
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
            Outcome(
                ok=True, counts=False, ttft_s=ttft_s, latency_s=total_s, output_tokens=output_tokens
            ),
            self.clock(),
        )

    def _skipped(self, ctx: RequestContext, skip: Skip, why: str = "") -> None:
        target = skip.target
        until = max(0.0, skip.until - self.clock()) if skip.until else 0.0
        detail = why or skip.reason + (f" for {until:.1f}s" if until else "")
        ctx.attempts.append(
            AttemptRecord.skipped(target.provider, target.model, skip.reason, detail)
        )
        ctx.skips.append(skip)
        self.metrics.child(
            self.metrics.skips, ctx.route_name, target.provider, target.model, skip.reason
        ).inc()

    def all_failed(self, ctx: RequestContext, failures: list[UpstreamFailure]) -> SpilloverError:
        if not failures and ctx.skips and all(s.reason == "unsupported" for s in ctx.skips):
            # No target could take this request as sent: the request, not the route, is wrong.
            reasons = "; ".join(a.detail for a in ctx.attempts if a.error_class == "unsupported")
            return InvalidRequest(
                f"no target of route '{ctx.route_name}' can serve this: {reasons}"
            )
        now = self.clock()
        waits = [s.until - now for s in ctx.skips if s.until > now]
        deadline = any(s.reason == "deadline" for s in ctx.skips) or (
            ctx.remaining() is not None and (ctx.remaining() or 0.0) < MIN_ATTEMPT_S
        )
        if deadline:
            self.metrics.child(self.metrics.deadline_exceeded, ctx.route_name).inc()
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


_REFUSING_SETTING = {"essential": "untranslatable: reject", "hosted": "hosted_tools: reject"}


def _native_for(
    ctx: RequestContext, route: Route, provider: Provider, continuation: bool
) -> NativeRequest | None:
    """The client's own body when this provider speaks the client's protocol. Else the
    chat form goes, without what it could not carry: advisory parts always, provider-run
    tools unless the route says `hosted_tools: reject`, essential parts when it says
    `untranslatable: drop`; otherwise this target is a skip that names them."""
    native = ctx.native
    if native is not None and not continuation and native.protocol in provider.native_protocols:
        return native
    refusing = {"essential": route.untranslatable, "hosted": route.hosted_tools}
    refused = [o for o in ctx.untranslatable if refusing.get(o.kind) == "reject"]
    if refused:
        shown = ", ".join(o.where for o in refused[:5])
        more = f" and {len(refused) - 5} more" if len(refused) > 5 else ""
        settings = " / ".join(sorted({_REFUSING_SETTING[o.kind] for o in refused}))
        raise Unsupported(
            f"{provider.name} takes {_wire_of(provider)}, which cannot carry {shown}{more} "
            f"(route '{ctx.route_name}' has {settings}; 'drop' serves without them)"
        )
    return None


def _wire_of(provider: Provider) -> str:
    """What a provider takes when the client's protocol is not native to it, in words."""
    if "anthropic" in provider.native_protocols:
        return "Anthropic Messages (translated from chat completions)"
    return "OpenAI chat completions"


async def _send(provider: Provider, call: UpstreamCall, served: Served) -> None:
    """The upstream call: a whole answer, or a stream read up to its first event."""
    result = await provider.send(call)
    if not isinstance(result, UpstreamStream):
        served.response = result
        return
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
