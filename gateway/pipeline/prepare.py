"""Everything before the first attempt — api → admit → shape → decide — for one request:
authenticate, read and parse the body once, validate it in its protocol, find the route,
admit it through limits and budgets, shape it for the provider's cache, and list the
targets that could serve it. Fills the request's context; raises a SpilloverError to
answer with."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.drill.faults import FaultTable
from gateway.errors import InvalidRequest, LedgerUnavailable, MethodNotAllowed
from gateway.keys import KeyStore, route_for
from gateway.metrics import GatewayMetrics
from gateway.pipeline.account import Accountant
from gateway.pipeline.admit import Admitter
from gateway.pipeline.budgets import Budgets
from gateway.pipeline.context import RequestContext
from gateway.pipeline.decide import candidates
from gateway.pipeline.ingress.base import ClientProtocol
from gateway.pipeline.ingress.body import checked_body, read_whole
from gateway.pipeline.ports import Inbound
from gateway.pipeline.shape import cache_hint, shape
from gateway.providers.base import Provider
from gateway.state.responses import HeavyRequest
from policies.pool import PRIORITY_RANK, Priority
from policies.route import Route, Target
from policies.schema import GatewayConfig


@dataclass(frozen=True, slots=True)
class Preparer:
    """The stages before the first attempt, for one config generation."""

    config: GatewayConfig
    keys: KeyStore
    providers: dict[str, Provider]
    metrics: GatewayMetrics
    accountant: Accountant
    admitter: Admitter
    budgets: Budgets
    faults: FaultTable | None

    async def __call__(
        self, ctx: RequestContext, protocol: ClientProtocol, inbound: Inbound
    ) -> tuple[Route, list[Target]]:
        """The route and its candidate targets, `ctx` filled on the way."""
        if inbound.method != "POST":
            raise MethodNotAllowed(f"{inbound.path} accepts POST only", allow="POST")
        headers = inbound.headers
        ctx.principal = self.keys.authenticate(protocol.credentials(headers))
        server = self.config.server
        raw = await read_whole(inbound, server.max_body_bytes)
        body = checked_body(raw, protocol.validate, server.max_json_depth)
        ctx.route_name, route = route_for(self.config, ctx.principal, body["model"])
        ctx.route = route
        try:
            ctx.take(await protocol.read(ctx, body, headers))
        except HeavyRequest as heavy:
            heavy.body = raw
            raise
        if not self.accountant.accepting():
            raise LedgerUnavailable(
                "the gateway cannot record requests right now (its ledger is full)",
                retry_after=5.0,
            )
        if self.faults is not None:
            self._drilled_redis_down(ctx, self.faults)
        ctx.held_limits = await self.admitter.admit(ctx, route)
        ctx.reservation = await self.budgets.reserve(ctx, route)
        if ctx.endpoint == "chat":
            self._shape(ctx, route)
        ctx.deadline = _deadline(
            ctx, route.latency_budget_ms, headers.get(b"x-spillover-budget-ms")
        )
        ctx.priority = _priority(ctx.principal.priority, headers.get(b"x-spillover-priority"))
        drill = headers.get(b"x-spillover-drill")
        ctx.drill = printable(drill[:64]) if drill else None
        targets, skipped = candidates(route, ctx.upstream_endpoint, self.providers)
        ctx.outcome.attempts.extend(skipped)
        if not targets:
            raise InvalidRequest(
                f"the model '{ctx.route_name}' does not serve {inbound.path}", param="model"
            )
        return route, targets

    def _drilled_redis_down(self, ctx: RequestContext, faults: FaultTable) -> None:
        """A drill's redis_down fault: admitted and budgeted without Redis, said in the row."""
        if (down := faults.redis_down()) is None:
            return
        down.fired += 1
        ctx.outcome.faults.append(f"{down.id}:redis_down")
        self.metrics.child(self.metrics.faults_injected, "redis_down", "redis").inc()

    def _shape(self, ctx: RequestContext, route: Route) -> None:
        """The shape stage: a byte-stable prefix, and the hints for the provider's cache."""
        shaped = shape(ctx.body, route.prompt_cache)
        ctx.body = shaped.body
        principal = ctx.principal
        ctx.cache_hint = cache_hint(
            shaped, route.prompt_cache, principal.tenant if principal else "-"
        )
        m = self.metrics
        for change in shaped.changes:
            m.child(m.shape_changes, ctx.route_name, change).inc()


def _deadline(ctx: RequestContext, budget_ms: int | None, header: bytes | None) -> float | None:
    """The route's latency budget, tightened (never loosened) by `x-spillover-budget-ms`."""
    if header is not None:
        if not header.isdigit() or len(header) > 9 or int(header) <= 0:
            raise InvalidRequest(
                "x-spillover-budget-ms must be a positive integer of at most 9 digits",
                param="x-spillover-budget-ms",
            )
        asked = int(header)
        budget_ms = asked if budget_ms is None else min(budget_ms, asked)
    return None if budget_ms is None else ctx.started + budget_ms / 1000


_PRIORITIES: dict[bytes, Priority] = {
    b"critical": "critical",
    b"standard": "standard",
    b"sheddable": "sheddable",
}


def _priority(granted: Priority, header: bytes | None) -> Priority:
    """The key's priority, lowered (never raised) by `x-spillover-priority`."""
    if header is None:
        return granted
    asked = _PRIORITIES.get(header.strip().lower())
    if asked is None:
        raise InvalidRequest(
            "x-spillover-priority must be critical, standard or sheddable",
            param="x-spillover-priority",
        )
    return asked if PRIORITY_RANK[asked] > PRIORITY_RANK[granted] else granted


def printable(raw: bytes) -> str:
    """A client's header value made safe for logs and rows: printable ASCII only."""
    return "".join(c if c.isprintable() else "?" for c in raw.decode("ascii", "replace"))


def client_request_id(given: bytes | None) -> str | None:
    """The client's own id for its request, when it is sane: printable ASCII without spaces
    (a log line's `key=value` words stay unforgeable), at most 128 characters."""
    if given and len(given) <= 128 and given.isascii():
        text = given.decode()
        if text.isprintable() and " " not in text:
            return text
    return None
