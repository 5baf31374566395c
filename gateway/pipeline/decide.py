"""Which targets can serve the endpoint at all: the route's targets minus those whose provider
lacks it (recorded as skips). Their order for this request (strategy, breakers, cool-downs,
deadlines) is `policies.routing.order` and `plan`, applied by the attempt runner with the
routing state it reads."""

from __future__ import annotations

from gateway.errors import AttemptRecord
from gateway.providers.base import Provider
from policies.schema import Endpoint, Route, Target


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
