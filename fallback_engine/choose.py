"""Replica choice among the admitted ones, pure but for the prefix table it is handed.

`prefix_affinity` (the default) estimates, per replica, the prefill work standing between
this request and its first token: the prompts already sent there that have not produced a
token yet, plus this prompt minus what the replica's prefix cache likely holds (the longest
chain of this request's block hashes last sent there). The cheapest replica wins, so a
shared system prompt stays where its KV blocks are — until that replica is busy prefilling
someone's long document, when the request goes elsewhere and pays its own prefill. Replicas
whose outstanding tokens pass mean * load_factor + slack (bounded load) are left out, so
affinity never piles onto one replica. `least_tokens`, `least_requests` and `round_robin`
exist to be compared against it."""

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


def _token_load(replica: ReplicaLoad) -> tuple[float, float]:
    # Outstanding tokens first; then the replica's own KV usage breaks ties between equals.
    return (replica.outstanding_tokens, replica.kv_estimate or 0.0)


def least_tokens(candidates: Sequence[ReplicaLoad], turn: int = 0) -> ReplicaLoad:
    """Fewest outstanding tokens; equals take turns (an idle pool spreads its requests)."""
    start = turn % len(candidates)
    return min([*candidates[start:], *candidates[:start]], key=_token_load)


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
        return Pick(least_tokens(candidates, turn).name, "least_loaded")
    mean = sum(r.outstanding_tokens for r in candidates) / len(candidates)
    bound = mean * routing.load_factor + routing.load_slack_tokens
    within = [r for r in candidates if r.outstanding_tokens + request.tokens <= bound]
    depths = table.depths(request.prefix)
    start = turn % len(candidates)
    rotated = [*candidates[start:], *candidates[:start]]
    pool = [r for r in rotated if r in within] or rotated

    def prefill_ahead(replica: ReplicaLoad) -> tuple[int, int]:
        cached = depths.get(replica.name, 0) * routing.block_tokens
        uncached = max(0, request.prompt_tokens - cached)
        return (replica.pending_prefill_tokens + uncached, replica.outstanding_tokens)

    best = min(pool, key=prefill_ahead)
    depth = depths.get(best.name, 0)
    deepest = max(depths.values(), default=0)
    if depth and depth == deepest:
        return Pick(best.name, "affinity", depth)
    return Pick(best.name, "load_guard" if deepest else "least_loaded", depth)
