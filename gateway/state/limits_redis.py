"""Limit counters in Redis, for many gateway replicas: one Lua script per decision (Redis's
own clock, so replicas agree); while Redis is away, per-process shares — each limit divided
by the number of gateway replicas last seen alive."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import replace
from typing import Any

from redis.exceptions import RedisError

from gateway.state.limits import Check, MemoryLimiter
from gateway.state.shared import SharedRedis
from policies.limits import Rate, Verdict

log = logging.getLogger("spillover.limits")


_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local n = #KEYS
local out = {1}
local news = {}
for i = 1, n do
  local interval, burst, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  local base = math.max(tat, now)
  local debt = base - now
  local tolerance = interval * burst
  if debt > tolerance + 1e-9 then
    out[1] = 0
    table.insert(out, 0); table.insert(out, tostring(debt - tolerance))
    table.insert(out, 0); table.insert(out, tostring(debt))
  else
    local new = base + interval * cost
    news[i] = new
    table.insert(out, 1); table.insert(out, '0')
    table.insert(out, math.max(0, math.floor((tolerance - (new - now)) / interval) + 1))
    table.insert(out, tostring(new - now))
  end
end
if out[1] == 1 then
  for i = 1, n do
    redis.call('SET', KEYS[i], tostring(news[i]), 'PX', math.ceil((news[i] - now) * 1000) + 60000)
  end
end
return out
"""

_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = now - tonumber(ARGV[1]) * tonumber(ARGV[2])
local new = math.max(floor, tat + tonumber(ARGV[1]) * tonumber(ARGV[3]))
redis.call('SET', KEYS[1], tostring(new), 'PX', math.ceil(math.max(0, new - now) * 1000) + 60000)
return 1
"""

_ENTER = """
for i = 1, #KEYS do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[i]) then return i end
end
for i = 1, #KEYS do
  redis.call('INCR', KEYS[i]); redis.call('EXPIRE', KEYS[i], 600)
end
return 0
"""

_LEAVE = """
for i = 1, #KEYS do
  if tonumber(redis.call('DECR', KEYS[i])) < 0 then redis.call('SET', KEYS[i], 0) end
end
return 1
"""


class RedisLimiter:
    def __init__(self, shared: SharedRedis, heartbeat_s: float = 5.0) -> None:
        self.shared = shared
        self._redis = shared.client
        self._prefix = shared.prefix + "limit:"
        self._replicas_key = shared.prefix + "replicas"
        self._me = f"{os.uname().nodename}:{os.getpid()}:{os.urandom(3).hex()}"
        self._acquire = self._redis.register_script(_ACQUIRE)
        self._settle = self._redis.register_script(_SETTLE)
        self._enter = self._redis.register_script(_ENTER)
        self._leave = self._redis.register_script(_LEAVE)
        self.local = MemoryLimiter()
        self.replicas = 1
        self._heartbeat_s = heartbeat_s
        shared.register(lambda: f"limits fall back to 1/{self.replicas} of each limit per replica")
        self._task: asyncio.Task[None] | None = None
        self._local_slots: dict[tuple[str, ...], int] = {}  # slots taken while degraded

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        """Register this replica and learn how many are alive (for the fallback shares)."""
        while True:
            try:
                now = time.time()
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.zadd(self._replicas_key, {self._me: now})
                    pipe.zremrangebyscore(self._replicas_key, 0, now - 3 * self._heartbeat_s)
                    pipe.zcard(self._replicas_key)
                    *_, alive = await pipe.execute()
                self.replicas = max(1, int(alive))
            except (RedisError, OSError) as exc:
                self.shared.lost(exc)
            await asyncio.sleep(self._heartbeat_s if self.available else 1.0)

    @property
    def available(self) -> bool:
        return self.shared.available

    def _share(self, check: Check) -> Check:
        share = max(1, check.rate.per_minute // self.replicas)
        return replace(check, rate=Rate(share, max(1, check.rate.burst // self.replicas)))

    async def acquire(self, checks: list[Check]) -> list[Verdict]:
        if self.available:
            try:
                args: list[Any] = []
                for c in checks:
                    args += [repr(c.rate.interval), c.rate.burst, c.cost]
                raw = await self._acquire(keys=[self._prefix + c.name for c in checks], args=args)
                return [
                    Verdict(
                        bool(int(raw[1 + 4 * i])),
                        0.0,
                        float(raw[2 + 4 * i]),
                        int(raw[3 + 4 * i]),
                        float(raw[4 + 4 * i]),
                    )
                    for i in range(len(checks))
                ]
            except (RedisError, OSError) as exc:
                self.shared.lost(exc)
        return await self.local.acquire([self._share(c) for c in checks])

    async def settle(self, check: Check, actual: int) -> None:
        if self.available:
            try:
                await self._settle(
                    keys=[self._prefix + check.name],
                    args=[repr(check.rate.interval), check.rate.burst, actual - check.cost],
                )
                return
            except (RedisError, OSError) as exc:
                self.shared.lost(exc)
        await self.local.settle(self._share(check), actual)

    async def enter(self, slots: list[tuple[str, int]]) -> str | None:
        if self.available:
            try:
                index = int(
                    await self._enter(
                        keys=[self._prefix + n for n, _ in slots], args=[lim for _, lim in slots]
                    )
                )
                return slots[index - 1][0] if index else None
            except (RedisError, OSError) as exc:
                self.shared.lost(exc)
        shares = [(n, max(1, lim // self.replicas)) for n, lim in slots]
        refused = await self.local.enter(shares)
        if refused is None:
            names = tuple(n for n, _ in slots)
            self._local_slots[names] = self._local_slots.get(names, 0) + 1
        return refused

    async def leave(self, slots: list[tuple[str, int]]) -> None:
        names = tuple(n for n, _ in slots)
        if self._local_slots.get(names):
            self._local_slots[names] -= 1
            await self.local.leave(slots)
            return
        with contextlib.suppress(RedisError, OSError):
            await self._leave(keys=[self._prefix + n for n in names])

    async def peek(self, names: list[str]) -> list[float]:
        if self.available and names:
            try:
                raw = await self._redis.mget([self._prefix + n for n in names])
                return [float(v or 0) for v in raw]
            except (RedisError, OSError) as exc:
                self.shared.lost(exc)
        return await self.local.peek(names)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(RedisError, OSError):
            await self._redis.zrem(self._replicas_key, self._me)
