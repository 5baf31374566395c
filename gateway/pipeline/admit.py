"""The admit stage: gateway-side limits per key, per team and per route — requests per
minute, tokens per minute (estimated when admitted, settled to the real usage afterwards)
and requests in flight. Over a limit: 429 in OpenAI's format with Retry-After and OpenAI's
own `x-ratelimit-*` headers, naming the limit that refused."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import GatewayRateLimited
from gateway.metrics import GatewayMetrics
from gateway.pipeline.context import HeldLimits, RequestContext
from gateway.pipeline.tokens import expected_output
from gateway.state.contracts import Limiter
from gateway.state.limits import Check
from gateway.state.names import limit_counter, limit_scope, rate_counter
from policies.limits import Rate, Verdict
from policies.route import Route
from policies.schema import GatewayConfig
from policies.schema_base import Limits


def _duration(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


@dataclass(frozen=True, slots=True)
class _Plan:
    """What admitting one key's request on one route checks, worked out once per config:
    each rate's counter, rate and kind ("requests" or "tokens"), and the in-flight slots."""

    rates: tuple[tuple[str, Rate, str], ...]
    slots: list[tuple[str, int]]  # shared by every request admitted on it: read only
    kinds: list[str]  # each rate's kind, in order
    tokens: bool  # a tokens-per-minute limit applies: the request's tokens are estimated


_MAX_PLANS = 10_000  # keys by routes: beyond that, worked out per request instead of kept


class Admitter:
    def __init__(self, limiter: Limiter, metrics: GatewayMetrics) -> None:
        self.limiter = limiter
        self._metrics = metrics
        self._keys: dict[str, Limits] = {}
        self._teams: dict[str, Limits] = {}
        self._from_file: tuple[dict[str, Limits], dict[str, Limits]] = ({}, {})
        self._stored: tuple[dict[str, Limits], dict[str, Limits]] = ({}, {})
        self._plans: dict[tuple[str, str | None, int], _Plan | None] = {}

    def configure(self, config: GatewayConfig) -> None:
        keys = {k.name: k.limits for k in config.keys}
        self._from_file = (keys, {name: t.limits for name, t in config.teams.items()})
        self._merge()

    def use_stored(self, keys: dict[str, Limits], teams: dict[str, Limits]) -> None:
        """The limits of keys and teams kept as data (`gateway.keyring`)."""
        self._stored = (keys, teams)
        self._merge()

    def _merge(self) -> None:
        # The file's names and the stored ones never overlap (a clash is a config error).
        self._keys = {**self._stored[0], **self._from_file[0]}
        self._teams = {**self._stored[1], **self._from_file[1]}
        self._plans = {}

    def _plan(self, ctx: RequestContext, route: Route | None) -> _Plan | None:
        principal = ctx.principal
        assert principal is not None
        # By the route object: a request of the config before a reload, still in flight,
        # must not leave its route's limits for the next config's requests.
        known = (principal.key_name, principal.team, id(route))
        if known in self._plans:
            return self._plans[known]
        plan = self._work_out(principal.key_name, principal.team, ctx.route_name, route)
        if len(self._plans) < _MAX_PLANS:
            self._plans[known] = plan
        return plan

    def _work_out(
        self, key: str, team: str | None, route_name: str, route: Route | None
    ) -> _Plan | None:
        scopes = [(limit_scope("key", key), self._keys.get(key, Limits()))]
        if team is not None and team in self._teams:
            scopes.append((limit_scope("team", team), self._teams[team]))
        if route is not None:
            scopes.append((limit_scope("route", route_name), route.limits))
        rates: list[tuple[str, Rate, str]] = []
        for name, limits in scopes:
            if limits.rpm:
                counter = rate_counter(name, "rpm", limits.rpm)
                rates.append((counter, Rate.of(limits.rpm, limits), "requests"))
            if limits.tpm and route is not None:
                counter = rate_counter(name, "tpm", limits.tpm)
                rates.append((counter, Rate.of(limits.tpm, limits), "tokens"))
        slots = [
            (limit_counter(name, "concurrent"), limits.concurrent)
            for name, limits in scopes
            if limits.concurrent
        ]
        if not rates and not slots:
            return None
        kinds = [kind for _, _, kind in rates]
        return _Plan(tuple(rates), slots, kinds, "tokens" in kinds)

    async def admit(self, ctx: RequestContext, route: Route | None) -> HeldLimits | None:
        """Through the key's, its team's and the route's limits. Without a route (a stored
        response read, the model list): the key's and team's requests and concurrency —
        such a request holds no prompt, so no tokens."""
        plan = self._plan(ctx, route)
        if plan is None:
            return None
        tokens = 0
        if plan.tokens and route is not None:
            tokens = ctx.prompt_tokens(route.targets[0].model) + expected_output(
                ctx.body, route.typical_output_tokens
            )
        checks = [
            Check(name, rate, 1 if kind == "requests" else tokens)
            for name, rate, kind in plan.rates
        ]
        if checks:
            verdicts = await self.limiter.acquire(checks)
            if not all(v.allowed for v in verdicts):
                raise self._refused(ctx, checks, plan.kinds, verdicts)
        kinds = zip(checks, plan.kinds, strict=True)
        held = HeldLimits(token_checks=[check for check, kind in kinds if kind == "tokens"])
        slots = plan.slots
        if slots:
            refused = await self.limiter.enter(slots)
            if refused is not None:
                scope = refused.rsplit(":", 1)[0]
                self._metrics.child(
                    self._metrics.limit_rejections, scope.split(":")[0], "concurrent"
                ).inc()
                raise GatewayRateLimited(
                    f"Too many concurrent requests for {scope}; wait for one to finish.",
                    retry_after=1.0,
                )
            held.slots = slots
        return held

    def _refused(
        self, ctx: RequestContext, checks: list[Check], kinds: list[str], verdicts: list[Verdict]
    ) -> GatewayRateLimited:
        worst = max(
            (i for i, v in enumerate(verdicts) if not v.allowed),
            key=lambda i: verdicts[i].retry_after,
        )
        check, verdict, kind = checks[worst], verdicts[worst], kinds[worst]
        scope = check.name.rsplit(":", 1)[0]
        self._metrics.child(self._metrics.limit_rejections, scope.split(":")[0], kind).inc()
        headers: dict[str, str] = {}
        for c, v, k in zip(checks, verdicts, kinds, strict=True):
            headers.setdefault(f"x-ratelimit-limit-{k}", str(c.rate.per_minute))
            headers.setdefault(f"x-ratelimit-remaining-{k}", str(v.remaining))
            headers.setdefault(f"x-ratelimit-reset-{k}", _duration(v.reset_after))
        unit = "requests" if kind == "requests" else "tokens"
        return GatewayRateLimited(
            f"Rate limit reached for {scope}: {check.rate.per_minute} {unit} per minute. "
            f"Try again in {verdict.retry_after:.3f}s.",
            retry_after=verdict.retry_after,
            headers=headers,
        )

    async def release(self, ctx: RequestContext, held: HeldLimits) -> None:
        if held.slots:
            await self.limiter.leave(held.slots)
        usage = ctx.outcome.usage
        actual = usage.prompt_tokens + usage.completion_tokens if usage else 0
        for check in held.token_checks:
            await self.limiter.settle(check, actual)
