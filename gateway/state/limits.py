"""Limit counters: GCRA rates (rpm, tpm) and concurrency, checked all-or-nothing — a
request refused by one limit is charged to none. `MemoryLimiter` for one process; the Redis
one for many is `limits_redis.py` (imported only when `state.backend: redis`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from policies.limits import Rate, Verdict, gcra, settle


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # e.g. "key:app:rpm"
    rate: Rate
    cost: int


class MemoryLimiter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._tat: dict[str, float] = {}
        self._inflight: dict[str, int] = {}
        self._clock = clock

    async def acquire(self, checks: list[Check]) -> list[Verdict]:
        now = self._clock()
        verdicts = [gcra(self._tat.get(c.name, 0.0), now, c.rate, c.cost) for c in checks]
        if all(v.allowed for v in verdicts):
            for check, verdict in zip(checks, verdicts, strict=True):
                self._tat[check.name] = verdict.tat
        return verdicts

    async def settle(self, check: Check, actual: int) -> None:
        now = self._clock()
        if check.name in self._tat:
            self._tat[check.name] = settle(
                self._tat[check.name], now, check.rate, check.cost, actual
            )

    async def enter(self, slots: list[tuple[str, int]]) -> str | None:
        """Take one concurrency slot under each (name, limit); the first full one refuses."""
        for name, limit in slots:
            if self._inflight.get(name, 0) >= limit:
                return name
        for name, _ in slots:
            self._inflight[name] = self._inflight.get(name, 0) + 1
        return None

    async def leave(self, slots: list[tuple[str, int]]) -> None:
        for name, _ in slots:
            self._inflight[name] = max(0, self._inflight.get(name, 0) - 1)

    async def peek(self, names: list[str]) -> list[float]:
        return [float(self._tat.get(n) or self._inflight.get(n, 0)) for n in names]

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None
