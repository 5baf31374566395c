"""Spend counters for budgets: micro-dollars spent and reserved per bucket (a key's or a
team's day or month). In memory for one process; in Redis for many (`spend_redis.py`,
imported only when `state.backend: redis`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bucket:
    name: str  # e.g. "key:app:day:2026-11-29"
    limit: int  # micro-dollars
    hard: bool
    resets_in: float  # seconds until the period ends
    label: str  # "key app daily budget ($10.00)"


class MemorySpendCounters:
    def __init__(self) -> None:
        self.spent: dict[str, int] = {}
        self.reserved: dict[str, int] = {}

    async def reserve(self, buckets: list[Bucket], amount: int) -> list[bool]:
        """Which buckets are already full; nothing is reserved when a hard one is."""
        full = [
            self.spent.get(b.name, 0) + self.reserved.get(b.name, 0) >= b.limit for b in buckets
        ]
        if any(f and b.hard for f, b in zip(full, buckets, strict=True)):
            return full
        for b in buckets:
            self.reserved[b.name] = self.reserved.get(b.name, 0) + amount
        return full

    async def settle(self, buckets: list[Bucket], amount: int, actual: int) -> list[int]:
        out = []
        for b in buckets:
            self.reserved[b.name] = max(0, self.reserved.get(b.name, 0) - amount)
            self.spent[b.name] = self.spent.get(b.name, 0) + actual
            out.append(self.spent[b.name])
        return out

    async def peek(self, names: list[str]) -> list[tuple[int, int]]:
        return [(self.spent.get(n, 0), self.reserved.get(n, 0)) for n in names]

    async def close(self) -> None:
        return None
