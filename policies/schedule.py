"""A day's (or a week's) pool schedule from a forecast: per slot, the cheapest GPU type and
replica count that hold the forecast p99 with headroom, never below the warm floor (the
off-peak need plus a margin), beside a flat plan sized for the peak. Money is exact: whole
micro-dollars, summed from each slot's replicas at their hourly price."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from policies.forecast import SLOT_S, Load
from policies.pool import Capacity, GpuType


@dataclass(frozen=True, slots=True)
class Choice:
    gpu: str
    replicas: int


@dataclass(frozen=True, slots=True)
class Want:
    """Replicas to run now, and why (for the log)."""

    replicas: int
    why: str


@dataclass(frozen=True, slots=True)
class Schedule:
    slots: list[int]
    choices: list[Choice]  # per slot
    warm_floor: Choice
    flat: Choice  # sized for the peak, all day
    cost_micro_usd: int
    flat_cost_micro_usd: int

    @property
    def saving_share(self) -> float:
        if not self.flat_cost_micro_usd:
            return 0.0
        return 1 - self.cost_micro_usd / self.flat_cost_micro_usd


def fits(capacity: Capacity, gpu: GpuType) -> bool:
    """Whether one replica of the model fits this GPU type's memory."""
    return capacity.model_memory_gb <= gpu.memory_gb * gpu.gpus_per_replica * capacity.memory_fit


def replicas_for(load: Load, gpu: GpuType, max_kv_usage: float, headroom: float) -> int:
    """Replicas of this type that hold `load` with headroom: the KV tokens in flight within
    `max_kv_usage` of each cache, and the tokens per second."""
    by_kv = load.kv_tokens / (gpu.kv_tokens_per_replica * max_kv_usage)
    by_rate = load.tokens_per_s / gpu.tokens_per_s
    return max(1, math.ceil(max(by_kv, by_rate) * (1 + headroom) - 1e-9))


def _price(gpu: GpuType, replicas: int) -> Fraction:
    """Micro-dollars one slot of this choice costs, exactly."""
    hourly = Fraction(str(gpu.usd_per_hour)) * gpu.gpus_per_replica * replicas
    return hourly * 1_000_000 * SLOT_S / 3600


def cheapest(
    capacity: Capacity, load: Load, max_kv_usage: float, only: str | None = None
) -> Choice:
    """The cheapest type (then the fewest replicas, then the name) that holds `load`; `only`:
    that type or none (the hardware a local supervisor has)."""
    options = [
        (_price(gpu, n), n, name)
        for name, gpu in sorted(capacity.gpus.items())
        if fits(capacity, gpu) and only in (None, name)
        for n in [replicas_for(load, gpu, max_kv_usage, capacity.headroom)]
    ]
    if not options:
        which = "none of the GPU types" if only is None else f"GPU type {only!r}"
        raise ValueError(f"the model fits {which} (model_memory_gb)")
    _, n, name = min(options)
    return Choice(name, n)


def plan(
    capacity: Capacity, slots: Sequence[int], loads: Sequence[Load], max_kv_usage: float
) -> Schedule:
    """The schedule for `slots`, each needing the forecast `loads`."""
    off_peak = min(loads, key=lambda x: (x.kv_tokens, x.tokens_per_s), default=Load())
    floor_load = off_peak.scaled(1 + capacity.warm_floor_margin)
    floor = cheapest(capacity, floor_load, max_kv_usage)
    peak = Load()
    for load in loads:
        peak = peak.peak(load)
    flat = cheapest(capacity, peak, max_kv_usage)
    choices = []
    for load in loads:
        choice = cheapest(capacity, load.peak(floor_load), max_kv_usage)
        choices.append(choice)
    cost = sum((_price(capacity.gpus[c.gpu], c.replicas) for c in choices), Fraction(0))
    flat_cost = _price(capacity.gpus[flat.gpu], flat.replicas) * len(loads)
    return Schedule(list(slots), choices, floor, flat, round(cost), round(flat_cost))


def desired(
    capacity: Capacity,
    forecast_load: Load,
    max_kv_usage: float,
    floor_load: Load,
    only: str | None = None,
) -> Choice:
    """What to run at a moment, for the load forecast there (call it for now + lead time)."""
    return cheapest(capacity, forecast_load.peak(floor_load), max_kv_usage, only)
