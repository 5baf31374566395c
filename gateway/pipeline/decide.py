"""The decide stage: which targets, in which order. `candidates` keeps the route's targets
whose provider serves the endpoint (the others are recorded as skips); `order` reads the
routing state and puts them in the order the route's strategy prefers, passing over those
that cannot help now (open circuit, cool-down, no headroom, no time) — the pure decisions
are `policies.routing.order` and `plan`."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from gateway.attempt_record import AttemptRecord
from gateway.pipeline.context import RequestContext
from gateway.pipeline.tokens import expected_output
from gateway.providers.base import Provider
from gateway.state.contracts import RoutingState
from policies import routing
from policies.route import Route, Target
from policies.routing import Skip, TargetView, target_key
from policies.schema_base import Endpoint


@dataclass(frozen=True, slots=True)
class Decision:
    usable: list[Target]  # in the order to try them
    skips: list[Skip]  # passed over, with why and until when
    views: dict[str, TargetView]  # the routing state they were decided on


async def order(
    ctx: RequestContext,
    route: Route,
    targets: list[Target],
    state: RoutingState,
    now: float,
    rng: random.Random,
    cost_of: Callable[[Target], float | None] | None = None,
) -> Decision:
    keys = [target_key(t) for t in targets]
    views = await state.views(keys, now, route.fail_over_when.window_s)
    ordered = routing.order(route, views, rng, targets, cost_of)
    usable, skips = routing.plan(
        route,
        ordered,
        views,
        now,
        ctx.remaining(),
        expected_output(ctx.body, route.typical_output_tokens),
        ctx.asked.stream,
    )
    return Decision(usable, skips, views)


def candidates(
    route: Route, endpoint: Endpoint, providers: dict[str, Provider]
) -> tuple[list[Target], list[AttemptRecord]]:
    usable: list[Target] = []
    skipped: list[AttemptRecord] = []
    for target in route.targets:
        if endpoint in providers[target.provider].supports:
            usable.append(target)
        else:
            skipped.append(
                AttemptRecord.skipped(
                    target.provider, target.model, "unsupported", f"no {endpoint} endpoint"
                )
            )
    return usable, skipped
