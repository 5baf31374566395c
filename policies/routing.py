"""Routing decisions as pure functions of the config and of observed state handed in: the
circuit breaker's state machine, the order of targets, which to skip and why, backoff and
the retry budget. No I/O and no clock of their own: `now` and `rng` are arguments."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from policies.route import Breaker, FailOverWhen, Hedge, RetryPolicy, Route, Target

BreakerPhase = Literal["closed", "open", "half_open"]
BreakerVerdict = Literal["allow", "probe", "deny"]


def target_key(target: Target) -> str:
    return f"{target.provider}/{target.model}"


@dataclass(frozen=True, slots=True)
class BreakerState:
    phase: BreakerPhase = "closed"
    open_until: float = 0.0
    ejections: int = 0
    probes: int = 0  # half-open probes handed out and not yet answered
    changed_at: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True)
class WindowStats:
    """A target's recent outcomes (the sliding window) and latency estimates."""

    requests: int = 0
    failures: int = 0
    rate_limited: int = 0
    consecutive_failures: int = 0
    p95_ttft_s: float | None = None
    p95_latency_s: float | None = None
    tpot_s: float | None = None  # seconds per output token


@dataclass(frozen=True, slots=True)
class TargetView:
    breaker: BreakerState = BreakerState()
    stats: WindowStats = WindowStats()
    cooldown_until: float = 0.0  # a 429's Retry-After, shared by every replica
    headroom_until: float = 0.0  # the provider said "0 remaining" until this time


# --- the breaker ---------------------------------------------------------------------


def trip_reason(stats: WindowStats, rules: FailOverWhen) -> str | None:
    """Why the window says this target is degraded, or None."""
    if rules.consecutive_failures and stats.consecutive_failures >= rules.consecutive_failures:
        return "consecutive_failures"
    if stats.requests < rules.min_requests:
        return None
    if rules.error_rate and stats.failures / stats.requests >= rules.error_rate:
        return "error_rate"
    if rules.rate_limited_share and stats.rate_limited / stats.requests >= rules.rate_limited_share:
        return "rate_limited_share"
    if rules.p95_ttft_ms and stats.p95_ttft_s and stats.p95_ttft_s * 1000 > rules.p95_ttft_ms:
        return "p95_ttft"
    if (
        rules.p95_latency_ms
        and stats.p95_latency_s
        and stats.p95_latency_s * 1000 > rules.p95_latency_ms
    ):
        return "p95_latency"
    return None


def ejection_seconds(ejections: int, config: Breaker) -> float:
    return float(min(config.base_ejection_s * max(1, ejections), config.max_ejection_s))


def _open(state: BreakerState, now: float, config: Breaker, reason: str) -> BreakerState:
    ejections = state.ejections + 1
    return BreakerState(
        "open", now + ejection_seconds(ejections, config), ejections, 0, now, reason
    )


def admit(state: BreakerState, now: float, config: Breaker) -> tuple[BreakerVerdict, BreakerState]:
    """May a request go to this target now? Open turns half-open when its time is up."""
    if state.phase == "closed":
        return "allow", state
    if state.phase == "open":
        if now < state.open_until:
            return "deny", state
        state = replace(state, phase="half_open", probes=0, changed_at=now)
    if state.probes < config.half_open_probes:
        return "probe", replace(state, probes=state.probes + 1)
    return "deny", state


def on_success(state: BreakerState, now: float, config: Breaker) -> BreakerState:
    if state.phase == "closed":
        # A target that stays healthy earns back one ejection per max_ejection_s.
        if state.ejections and now - state.changed_at >= config.max_ejection_s:
            return replace(state, ejections=state.ejections - 1, changed_at=now)
        return state
    return BreakerState("closed", 0.0, state.ejections, 0, now, "")


def on_failure(
    state: BreakerState, stats: WindowStats, now: float, rules: FailOverWhen, config: Breaker
) -> BreakerState:
    if state.phase == "half_open":
        return _open(state, now, config, "probe_failed")
    if state.phase == "open":
        return state
    reason = trip_reason(stats, rules)
    return _open(state, now, config, reason) if reason else state


# --- choosing targets ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Skip:
    target: Target
    reason: Literal["breaker_open", "cooldown", "no_headroom", "deadline", "unsupported"]
    until: float = 0.0  # when it may be usable again (for Retry-After)


def estimated_seconds(stats: WindowStats, output_tokens: int, stream: bool) -> float | None:
    """How long this target would take: to the first token for a stream, else to the end."""
    if stats.p95_ttft_s is None:
        return None
    if stream:
        return stats.p95_ttft_s
    return stats.p95_ttft_s + (stats.tpot_s or 0.0) * output_tokens


def order(
    route: Route,
    views: dict[str, TargetView],
    rng: random.Random,
    targets: list[Target] | None = None,
    cost_of: Callable[[Target], float | None] | None = None,
) -> list[Target]:
    """`targets` (the route's own by default, e.g. those that serve the endpoint) in the
    order the route's strategy prefers. `cost_of` is what a typical request costs at a
    target (None: unknown, tried last); without it, the targets' own `price`."""
    targets = list(route.targets if targets is None else targets)
    if route.strategy == "weighted":
        # Weighted sampling without replacement (Efraimidis-Spirakis keys).
        return sorted(targets, key=lambda t: -(rng.random() ** (1.0 / t.weight)))
    if route.strategy == "lowest_latency":

        def latency(t: Target) -> float:
            stats = views.get(target_key(t), TargetView()).stats
            estimate = estimated_seconds(stats, route.typical_output_tokens, stream=False)
            return 0.0 if estimate is None else estimate  # unmeasured: try it (explore)

        return sorted(targets, key=latency)
    if route.strategy == "lowest_cost":

        def listed(t: Target) -> float | None:
            if t.price is None:
                return None
            return t.price.input_per_mtok + t.price.output_per_mtok * (
                route.typical_output_tokens / 1000
            )

        def cost(t: Target) -> float:
            known = (cost_of or listed)(t)
            return float("inf") if known is None else known

        return sorted(targets, key=cost)
    return targets


def plan(
    route: Route,
    targets: list[Target],
    views: dict[str, TargetView],
    now: float,
    remaining_s: float | None,
    output_tokens: int,
    stream: bool,
) -> tuple[list[Target], list[Skip]]:
    """Split `targets` (already ordered) into those worth trying now and the skipped ones.
    The breaker's own admission (probes) is asked later, per attempt."""
    usable: list[Target] = []
    skipped: list[Skip] = []
    for target in targets:
        view = views.get(target_key(target), TargetView())
        if view.breaker.phase == "open" and now < view.breaker.open_until:
            skipped.append(Skip(target, "breaker_open", view.breaker.open_until))
        elif now < view.cooldown_until:
            skipped.append(Skip(target, "cooldown", view.cooldown_until))
        elif now < view.headroom_until:
            skipped.append(Skip(target, "no_headroom", view.headroom_until))
        elif remaining_s is not None and (
            (estimate := estimated_seconds(view.stats, output_tokens, stream)) is not None
            and estimate > remaining_s
        ):
            skipped.append(Skip(target, "deadline"))
        else:
            usable.append(target)
    return usable, skipped


# --- retrying ------------------------------------------------------------------------


def backoff_seconds(
    tries_on_target: int, policy: RetryPolicy, rng: random.Random, retry_after: float | None
) -> float:
    """0 for a fresh target; otherwise full-jitter exponential, at least the Retry-After."""
    if tries_on_target == 0:
        return 0.0
    cap = policy.backoff_cap_ms / 1000
    ceiling = min(cap, policy.backoff_base_ms / 1000 * 2 ** (tries_on_target - 1))
    wait = rng.uniform(0, ceiling)
    return max(wait, retry_after or 0.0)


def within_budget(requests: int, spent: int, ratio: float, minimum: int) -> bool:
    """Envoy/SRE-style budget: extra attempts stay under a share of recent requests."""
    return spent < max(minimum, ratio * requests)


def retry_allowed(requests: int, retries: int, policy: RetryPolicy) -> bool:
    return within_budget(requests, retries, policy.budget_ratio, policy.budget_min_retries)


def hedge_delay(hedge: Hedge, stats: WindowStats, stream: bool) -> float:
    """When to start the hedge: the configured delay, else the first target's recent p95
    (time to first token for streams, to the whole answer otherwise)."""
    if hedge.delay_ms is not None:
        return hedge.delay_ms / 1000
    p95 = stats.p95_ttft_s if stream else stats.p95_latency_s
    return p95 if p95 is not None else hedge.default_delay_ms / 1000
