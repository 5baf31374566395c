"""The attempt stage: take the decide stage's order of targets, hand it to the attempt
sequence (`sequence.py`, the only place that retries), and make each single attempt — the
upstream call and its share of the deadline. What each outcome teaches the routing state
is `outcomes.py`'s."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from gateway import tracing
from gateway.accounting.pricing import ModelPrice
from gateway.attempt_record import AttemptRecord
from gateway.errors import (
    Unsupported,
    UpstreamFailure,
)
from gateway.metrics import GatewayMetrics
from gateway.pipeline import decide
from gateway.pipeline.context import RequestContext
from gateway.pipeline.outcomes import OutcomeLearner
from gateway.pipeline.retry_budget import RetryBudget
from gateway.pipeline.sequence import AttemptSequence, SequenceParts
from gateway.pipeline.served import Served
from gateway.pipeline.timeouts import cut, share_of, timeouts_of
from gateway.pipeline.tokens import expected_output
from gateway.providers.base import (
    ANTHROPIC,
    NativeRequest,
    Provider,
    UpstreamCall,
    UpstreamStream,
)
from gateway.providers.translate.chat_form import REASONING_SETTINGS
from gateway.state.contracts import RoutingState
from gateway.tracing import Tracing
from policies.route import Route, Target
from policies.routing import Skip
from policies.schema import TracingConfig
from policies.schema_base import Timeouts

log = logging.getLogger("spillover.attempt")


class AttemptRunner:
    """The attempt stage for one config generation: orders the targets (decide), walks them
    (`AttemptSequence`), and makes each single attempt; `outcomes` learns from each."""

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
        self.tracing = tracing or Tracing(TracingConfig())
        self._timeouts = {name: timeouts_of(t) for name, t in timeouts.items()}
        self.metrics = metrics
        self.state = state
        self.clock = clock
        self._price_of = price_of
        self._reasons = reasons  # (provider, model): takes a reasoning effort
        self.rng = rng or random.Random()
        self.outcomes = OutcomeLearner(state, metrics, clock, on_breaker)
        self._walk = SequenceParts(
            attempt=self.one,
            admitted=self.outcomes.admitted,
            breaker_opened=self.outcomes.breaker_opened,
            supports=lambda provider, endpoint: endpoint in providers[provider].supports,
            metrics=metrics,
            retry_budget=RetryBudget(),
            hedge_budget=RetryBudget(),
            clock=clock,
            rng=self.rng,
        )

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
        self._walk.retry_budget.request(ctx.route_name, now, route.retry.budget_window_s)
        decided = await decide.order(
            ctx, route, targets, self.state, now, self.rng, self._cost_of(route)
        )
        for skip in decided.skips:
            self.outcomes.skipped(ctx, skip)
        return await AttemptSequence(self._walk, ctx, route, decided, body, continuation).run()

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
        ttft_budget = (
            route.ttft_budget_ms / 1000 if ctx.asked.stream and route.ttft_budget_ms else None
        )
        call = UpstreamCall(
            endpoint=ctx.upstream_endpoint,
            body=body,
            model=target.model,
            stream=ctx.asked.stream,
            client_wants_usage=ctx.asked.client_wants_usage,
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
            faults=ctx.outcome.faults,
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
            self.outcomes.skipped(ctx, Skip(target, "unsupported", 0.0), skip.message)
            raise
        except UpstreamFailure as failure:
            await self.outcomes.failed(ctx, route, target, failure, time.perf_counter() - started)
            raise
        served.elapsed = time.perf_counter() - started
        ctx.outcome.attempts.append(
            AttemptRecord.ok(target.provider, target.model, served.elapsed * 1000)
        )
        return served

    def _translated(
        self, ctx: RequestContext, target: Target, call: UpstreamCall, served: Served
    ) -> None:
        """A translated request: the client's reasoning settings become the target's effort
        where the target reasons; whatever else could not be carried, it is served without."""
        effort = ctx.asked.reasoning_effort
        carried: frozenset[str] = frozenset()
        reasons = self._reasons
        if effort and reasons is not None and reasons(target.provider, target.model):
            call.body = {**call.body, "reasoning_effort": effort}
            carried = REASONING_SETTINGS
        served.dropped = [o.where for o in ctx.asked.untranslatable if o.where not in carried]


_REFUSING_SETTING = {"essential": "untranslatable: reject", "hosted": "hosted_tools: reject"}


def _native_for(
    ctx: RequestContext, route: Route, provider: Provider, continuation: bool
) -> NativeRequest | None:
    """The client's own body when this provider speaks the client's protocol. Else the
    chat form goes, without what it could not carry: advisory parts always, provider-run
    tools unless the route says `hosted_tools: reject`, essential parts when it says
    `untranslatable: drop`; otherwise this target is a skip that names them."""
    native = ctx.asked.native
    if native is not None and not continuation and native.protocol in provider.native_protocols:
        return native
    refusing = {"essential": route.untranslatable, "hosted": route.hosted_tools}
    refused = [o for o in ctx.asked.untranslatable if refusing.get(o.kind) == "reject"]
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
    if ANTHROPIC in provider.native_protocols:
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
