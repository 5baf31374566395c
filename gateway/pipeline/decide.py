"""Which targets, in which order. For now: the route's targets in their configured order,
minus those whose provider cannot serve the endpoint (recorded as skips)."""

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
                AttemptRecord(
                    target.provider,
                    target.model,
                    "skipped",
                    "unsupported",
                    None,
                    f"no {endpoint} endpoint",
                    0.0,
                )
            )
    return usable, skipped
