"""Replica choice among the admitted ones, pure but for the prefix table it is handed.

`prefix_affinity` (the default): the replica holding the longest prefix of this request, as
long as its load stays within the bounded-load guard (mean * load_factor + slack, in tokens:
consistent hashing with bounded loads); otherwise, and for prefixes never seen, the replica
with the fewest outstanding tokens. `least_tokens`, `least_requests` and `round_robin` exist
to be compared against it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from fallback_engine.load import PoolRequest, ReplicaLoad
from fallback_engine.prefix import PrefixTable
from policies.pool import Routing

PickReason = Literal["affinity", "least_loaded", "load_guard", "round_robin", "least_requests"]


@dataclass(frozen=True, slots=True)
class Pick:
    replica: str
    reason: PickReason
    matched_blocks: int = 0


def _token_load(replica: ReplicaLoad) -> tuple[float, float, str]:
    # Outstanding tokens first; then the replica's own KV usage breaks ties between equals.
    return (replica.outstanding_tokens, replica.kv_estimate or 0.0, replica.name)


def least_tokens(candidates: Sequence[ReplicaLoad]) -> ReplicaLoad:
    return min(candidates, key=_token_load)


def choose(
    candidates: Sequence[ReplicaLoad],
    request: PoolRequest,
    routing: Routing,
    table: PrefixTable,
    turn: int,
) -> Pick:
    """`candidates` is non-empty; `turn` is a counter for round robin."""
    strategy = routing.strategy
    if strategy == "round_robin":
        ordered = sorted(candidates, key=lambda r: r.name)
        return Pick(ordered[turn % len(ordered)].name, "round_robin")
    if strategy == "least_requests":
        best = min(candidates, key=lambda r: (r.outstanding_requests, r.name))
        return Pick(best.name, "least_requests")
    if strategy == "least_tokens" or not request.prefix:
        return Pick(least_tokens(candidates).name, "least_loaded")
    mean = sum(r.outstanding_tokens for r in candidates) / len(candidates)
    bound = mean * routing.load_factor + routing.load_slack_tokens
    within = [r for r in candidates if r.outstanding_tokens + request.tokens <= bound]
    found = table.deepest(request.prefix, (r.name for r in within))
    if found is not None:
        return Pick(found[0], "affinity", found[1])
    held_elsewhere = table.deepest(request.prefix, (r.name for r in candidates))
    reason: PickReason = "load_guard" if held_elsewhere is not None else "least_loaded"
    return Pick(least_tokens(candidates).name, reason)
