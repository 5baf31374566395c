"""An attempt's timeouts: the provider's phases, cut to the share of the request's deadline
the attempt may spend."""

from __future__ import annotations

from gateway.providers.base import AttemptTimeouts
from policies.schema_base import Timeouts


def timeouts_of(config: Timeouts) -> AttemptTimeouts:
    return AttemptTimeouts(
        connect=config.connect_ms / 1000,
        first_byte=config.first_byte_ms / 1000,
        idle=config.idle_ms / 1000,
        total=config.total_ms / 1000,
    )


def cut(
    base: AttemptTimeouts, remaining: float | None, ttft_budget: float | None
) -> AttemptTimeouts:
    if remaining is None and ttft_budget is None:
        return base
    left = remaining if remaining is not None else float("inf")
    first = min(base.first_byte, left, ttft_budget or float("inf"))
    return AttemptTimeouts(
        connect=min(base.connect, left),
        first_byte=first,
        idle=base.idle,
        total=min(base.total, left),
    )


def share_of(remaining: float | None, parts: int) -> float | None:
    return None if remaining is None else max(0.0, remaining) / parts
