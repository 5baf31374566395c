"""Admission control, pure: which ready replicas may take this request, and when none can,
what the pool's YAML says to do. KV cache is the binding constraint,
and shedding is a decision written down, never an accident of queues filling up."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from fallback_engine.load import PoolRequest, ReplicaLoad
from policies.pool import Admission

ShedReason = Literal[
    "no_ready_replica",
    "kv_full",
    "queue_full",
    "queue_timeout",
    "sheddable",
    "context_too_large",
]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a replica cannot take the request now."""

    replica: str
    reason: Literal["kv_usage", "waiting", "kv_room", "context"]


def eligible(
    replicas: Sequence[ReplicaLoad], request: PoolRequest, policy: Admission
) -> tuple[list[ReplicaLoad], list[Refusal]]:
    """The ready replicas with room for this request, and why the others have none.
    A replica with stale metrics is judged on what this gateway has sent it."""
    fit: list[ReplicaLoad] = []
    refused: list[Refusal] = []
    long_context = request.prompt_tokens > policy.long_context_tokens
    for replica in replicas:
        kv = replica.kv_estimate
        if _over_window(replica, request):
            refused.append(Refusal(replica.name, "context"))
        elif kv is not None and kv >= policy.max_kv_usage:
            refused.append(Refusal(replica.name, "kv_usage"))
        elif replica.waiting is not None and replica.waiting > policy.max_waiting:
            refused.append(Refusal(replica.name, "waiting"))
        elif (
            long_context and (room := replica.kv_room_tokens) is not None and room < request.tokens
        ):
            refused.append(Refusal(replica.name, "kv_room"))
        else:
            fit.append(replica)
    return fit, refused


def _over_window(replica: ReplicaLoad, request: PoolRequest) -> bool:
    """The prompt alone fills the replica's context window: it would answer 400."""
    window = replica.max_model_len
    return window is not None and request.prompt_tokens >= window


def pool_kv_usage(replicas: Sequence[ReplicaLoad]) -> float | None:
    known = [kv for r in replicas if (kv := r.kv_estimate) is not None]
    return sum(known) / len(known) if known else None


def shed_sheddable(replicas: Sequence[ReplicaLoad], policy: Admission) -> bool:
    """Sheddable traffic stops first: once the pool's mean KV usage passes its threshold."""
    usage = pool_kv_usage(replicas)
    return usage is not None and usage >= policy.sheddable_threshold


def too_large_for_any(
    replicas: Sequence[ReplicaLoad], request: PoolRequest, max_model_len: int | None
) -> bool:
    """A request no replica could ever hold: waiting for it is pointless."""
    if max_model_len is not None and request.tokens > max_model_len:
        return True
    if replicas and all(_over_window(r, request) for r in replicas):
        return True
    capacities = [r.kv_capacity_tokens for r in replicas if r.kv_capacity_tokens]
    return bool(capacities) and request.tokens > max(capacities)


def retry_after_s(backlog_tokens: int, drain_tokens_per_s: float) -> float:
    """How long until the pool has worked off what is in front of a new request."""
    if drain_tokens_per_s <= 0:
        return 5.0
    return float(min(60, max(1, math.ceil(backlog_tokens / drain_tokens_per_s))))
