"""Spend counters for budgets: micro-dollars spent and reserved per bucket (a key's or a
team's day or month). In memory for one process; in Redis for many, where one Lua script
reserves across every bucket at once, and while Redis is away this replica counts locally."""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import RedisError

from gateway.state.shared import SharedRedis


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


_RESERVE = """
local amount = tonumber(ARGV[1])
local full, refuse = {}, false
for i = 1, #KEYS do
  local hard, limit = ARGV[1 + 3*i - 2], tonumber(ARGV[1 + 3*i - 1])
  local spent = tonumber(redis.call('HGET', KEYS[i], 'spent') or '0')
  local reserved = tonumber(redis.call('HGET', KEYS[i], 'reserved') or '0')
  full[i] = (spent + reserved >= limit) and 1 or 0
  if full[i] == 1 and hard == '1' then refuse = true end
end
if not refuse then
  for i = 1, #KEYS do
    redis.call('HINCRBY', KEYS[i], 'reserved', amount)
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[1 + 3*i]))
  end
end
return full
"""

_SETTLE = """
local out = {}
for i = 1, #KEYS do
  local left = redis.call('HINCRBY', KEYS[i], 'reserved', -tonumber(ARGV[1]))
  if left < 0 then redis.call('HSET', KEYS[i], 'reserved', 0) end
  table.insert(out, redis.call('HINCRBY', KEYS[i], 'spent', tonumber(ARGV[2])))
end
return out
"""


class RedisSpendCounters:
    """Shared spend counters; while Redis is away, this replica counts locally."""

    def __init__(self, shared: SharedRedis) -> None:
        self.shared = shared
        self._redis = shared.client
        self._prefix = shared.prefix + "budget:"
        shared.register(lambda: "budgets count on this replica")
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)
        self.local = MemorySpendCounters()

    async def reserve(self, buckets: list[Bucket], amount: int) -> list[bool]:
        args: list[str | int] = [amount]
        for b in buckets:
            args += ["1" if b.hard else "0", b.limit, int(b.resets_in) + 86_400 * 35]
        if self.shared.available:
            try:
                keys = [self._prefix + b.name for b in buckets]
                return [bool(int(f)) for f in await self._reserve(keys=keys, args=args)]
            except (RedisError, OSError) as exc:
                self.shared.lost(exc)
        return await self.local.reserve(buckets, amount)

    async def settle(self, buckets: list[Bucket], amount: int, actual: int) -> list[int]:
        if self.shared.available:
            try:
                keys = [self._prefix + b.name for b in buckets]
                return [int(v) for v in await self._settle(keys=keys, args=[amount, actual])]
            except (RedisError, OSError) as exc:
                self.shared.lost(exc)
        return await self.local.settle(buckets, amount, actual)

    async def peek(self, names: list[str]) -> list[tuple[int, int]]:
        if self.shared.available and names:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for name in names:
                        pipe.hmget(self._prefix + name, ["spent", "reserved"])
                    raw = await pipe.execute()
                return [(int(s or 0), int(r or 0)) for s, r in raw]
            except (RedisError, OSError) as exc:
                self.shared.lost(exc)
        return await self.local.peek(names)

    async def close(self) -> None:
        """Nothing of its own to close: the client is the SharedRedis owner's."""
