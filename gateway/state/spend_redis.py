"""Spend counters in Redis, for many gateway replicas: one Lua script reserves across every
bucket at once; while Redis is away this replica counts locally."""

from __future__ import annotations

from redis.exceptions import RedisError

from gateway.state.shared import SharedRedis
from gateway.state.spend import Bucket, MemorySpendCounters

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
