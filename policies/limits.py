"""GCRA (the generic cell rate algorithm) as a pure function: one timestamp of state per
limit (the theoretical arrival time), any cost per request, a burst tolerance. In any
window of W seconds it admits at most rate * W + burst units plus one request's cost."""

from __future__ import annotations

from dataclasses import dataclass

from policies.schema_base import Limits


@dataclass(frozen=True, slots=True)
class Rate:
    """`per_minute` units (requests or tokens) with `burst` extra at once."""

    per_minute: int
    burst: int

    @property
    def interval(self) -> float:
        return 60.0 / self.per_minute

    @classmethod
    def of(cls, limit: int, limits: Limits) -> Rate:
        # The request that lands on a full window is the burst's last unit, so any 60 s
        # window admits at most limit * (1 + burst_share).
        return cls(limit, max(0, int(limit * limits.burst_share) - 1))


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    tat: float  # the new theoretical arrival time (unchanged when refused)
    retry_after: float  # seconds until this cost would be admitted (0 when allowed)
    remaining: int  # units that could still be admitted right now
    reset_after: float  # seconds until the limit is fully replenished


def gcra(tat: float, now: float, rate: Rate, cost: int) -> Verdict:
    """Admit while the limit is not in debt beyond its burst, then charge the whole cost:
    a request larger than the burst (a long prompt) still passes when the limit is idle,
    and the debt it leaves holds back the next ones."""
    interval = rate.interval
    tolerance = interval * rate.burst
    base = max(tat, now)
    debt = base - now
    if debt > tolerance + 1e-9:
        return Verdict(False, tat, debt - tolerance, 0, debt)
    new_tat = base + interval * cost
    remaining = max(0, int((tolerance - (new_tat - now)) / interval) + 1)
    return Verdict(True, new_tat, 0.0, remaining, new_tat - now)


def settle(tat: float, now: float, rate: Rate, estimated: int, actual: int) -> float:
    """Correct a charge made on an estimate once the real usage is known."""
    return max(now - rate.interval * rate.burst, tat + rate.interval * (actual - estimated))
