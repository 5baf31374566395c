"""Routing state shared by many gateway replicas through Redis.

Windows are counted by a Lua script (add and sum in one step). Breaker state is one JSON
value per target, changed by the same pure functions as in memory and written back with a
compare-and-set script, so two replicas never lose each other's transitions. Cool-downs
only ever grow (a max-set script). Every call has a short timeout; while Redis is away the
gateway decides on its local copy, says so in a metric and one log line, and pushes what it
learnt back when Redis returns. It also starts while Redis is down."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any

from redis.exceptions import RedisError

from gateway.state.memory import MemoryState
from gateway.state.shared import SharedRedis
from gateway.state.windows import BUCKET_S, KEEP_S, AttemptSample, TargetWindow
from policies import routing
from policies.route import Breaker, FailOverWhen
from policies.routing import BreakerState, BreakerVerdict, TargetView

log = logging.getLogger("spillover.state")

_WINDOW_ADD = """
local key, bucket, ok, limited, span, keep = KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3],
  tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('HINCRBY', key, 'r:' .. bucket, 1)
if ok == '1' then
  redis.call('HSET', key, 'c', 0)
else
  redis.call('HINCRBY', key, 'f:' .. bucket, 1)
  redis.call('HINCRBY', key, 'c', 1)
end
if limited == '1' then redis.call('HINCRBY', key, 'l:' .. bucket, 1) end
redis.call('HDEL', key, 'r:' .. (bucket - keep), 'f:' .. (bucket - keep), 'l:' .. (bucket - keep))
redis.call('EXPIRE', key, keep)
local r, f, l = 0, 0, 0
for b = bucket - span + 1, bucket do
  r = r + (tonumber(redis.call('HGET', key, 'r:' .. b)) or 0)
  f = f + (tonumber(redis.call('HGET', key, 'f:' .. b)) or 0)
  l = l + (tonumber(redis.call('HGET', key, 'l:' .. b)) or 0)
end
return {r, f, l, tonumber(redis.call('HGET', key, 'c')) or 0}
"""

_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

_MAX_SET = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', math.floor(wanted * 1000) + 1)
end
return 1
"""

_STATE_TTL_S = 24 * 3600


_ROUTING_KINDS = ("breaker", "cool", "room", "win")


def _encode(state: BreakerState) -> str:
    return json.dumps(asdict(state), separators=(",", ":"))


def _decode(raw: str | bytes | None) -> BreakerState:
    return BreakerState(**json.loads(raw)) if raw else BreakerState()


class RedisState:
    backend = "redis"

    def __init__(self, shared: SharedRedis) -> None:
        self.shared = shared
        self._redis = shared.client
        self._prefix = shared.prefix
        self.local = MemoryState()
        shared.register(lambda: "routing on local state until it returns", self._push_local)
        self._window_add = self._redis.register_script(_WINDOW_ADD)
        self._cas = self._redis.register_script(_COMPARE_AND_SET)
        self._max_set = self._redis.register_script(_MAX_SET)

    def _k(self, kind: str, key: str) -> str:
        return f"{self._prefix}{kind}:{key}"

    @property
    def available(self) -> bool:
        return self.shared.available

    async def _push_local(self) -> None:
        """Tell Redis what this replica learnt while it was away: open breakers and
        cool-downs win over a closed remote state."""
        for key, state in self.local.breakers.items():
            if state.phase == "open":
                await self._redis.set(self._k("breaker", key), _encode(state), ex=_STATE_TTL_S)
        for key, until in self.local.cooldowns.items():
            await self._max_set(keys=[self._k("cool", key)], args=[repr(until)])

    async def views(self, keys: list[str], now: float, window_s: float) -> dict[str, TargetView]:
        local = self.local.local_views(keys, now, window_s)
        if not self.available:
            return local
        try:
            names = [self._k(kind, key) for key in keys for kind in ("breaker", "cool", "room")]
            values = await self._redis.mget(names)
        except (RedisError, OSError) as exc:
            self.shared.lost(exc)
            return local
        out: dict[str, TargetView] = {}
        for i, key in enumerate(keys):
            breaker, cool, room = values[3 * i : 3 * i + 3]
            shared = _decode(breaker)
            self.local.breakers[key] = shared
            out[key] = TargetView(
                shared,
                local[key].stats,
                max(float(cool or 0), local[key].cooldown_until),
                max(float(room or 0), local[key].headroom_until),
            )
        return out

    async def _change(self, key: str, change: Any) -> BreakerState:
        """Read-modify-write one breaker with compare-and-set; a few tries under contention."""
        name = self._k("breaker", key)
        for _ in range(5):
            raw = await self._redis.get(name)
            current = _decode(raw)
            updated = change(current)
            if updated == current:
                return current
            expected = raw.decode() if isinstance(raw, bytes) else (raw or "")
            if await self._cas(keys=[name], args=[expected, _encode(updated), _STATE_TTL_S]):
                return updated  # type: ignore[no-any-return]
        return current

    async def admit(self, key: str, now: float, config: Breaker) -> BreakerVerdict:
        if not self.available:
            return await self.local.admit(key, now, config)
        decision: list[BreakerVerdict] = []

        def change(state: BreakerState) -> BreakerState:
            verdict, new = routing.admit(state, now, config)
            decision[:] = [verdict]
            return new

        try:
            self.local.breakers[key] = await self._change(key, change)
        except (RedisError, OSError) as exc:
            self.shared.lost(exc)
            return await self.local.admit(key, now, config)
        return decision[0]

    async def record(
        self, key: str, outcome: AttemptSample, now: float, rules: FailOverWhen, config: Breaker
    ) -> BreakerState:
        window = self.local.window(key)
        window.add(outcome, now)
        local_stats = window.stats(now, rules.window_s)
        if not self.available or not outcome.counts:
            return self.local.apply(key, outcome, local_stats, now, rules, config)
        try:
            bucket = int(now / BUCKET_S)
            r, f, lim, consecutive = await self._window_add(
                keys=[self._k("win", key)],
                args=[
                    bucket,
                    "1" if outcome.ok else "0",
                    "1" if outcome.rate_limited else "0",
                    max(1, int(rules.window_s / BUCKET_S)),
                    KEEP_S,
                ],
            )
            stats = routing.WindowStats(
                int(r),
                int(f),
                int(lim),
                int(consecutive),
                local_stats.p95_ttft_s,
                local_stats.p95_latency_s,
                local_stats.tpot_s,
            )

            def change(state: BreakerState) -> BreakerState:
                if outcome.ok:
                    return routing.on_success(state, now, config)
                return routing.on_failure(state, stats, now, rules, config)

            state = await self._change(key, change)
        except (RedisError, OSError) as exc:
            self.shared.lost(exc)
            return self.local.apply(key, outcome, local_stats, now, rules, config)
        self.local.breakers[key] = state
        return state

    async def _grow(self, kind: str, key: str, until: float) -> None:
        if not self.available:
            return
        try:
            await self._max_set(keys=[self._k(kind, key)], args=[repr(until)])
        except (RedisError, OSError) as exc:
            self.shared.lost(exc)

    async def cool_down(self, key: str, until: float) -> None:
        await self.local.cool_down(key, until)
        await self._grow("cool", key, until)

    async def limit_headroom(self, key: str, until: float) -> None:
        await self.local.limit_headroom(key, until)
        await self._grow("room", key, until)

    def local_window(self, key: str) -> TargetWindow:
        return self.local.window(key)

    def describe(self, now: float, window_s: float) -> dict[str, Any]:
        return self.local.describe(now, window_s)

    def window_stats(self, key: str, now: float, window_s: float) -> routing.WindowStats:
        return self.local.window_stats(key, now, window_s)

    async def reset(self, key: str | None = None) -> None:
        """Forget what was observed of one target or of all, here and for every replica
        sharing this prefix. Only routing state: limit and budget counters share the prefix
        and must survive (a reset is not a way around a budget)."""
        await self.local.reset(key)
        try:
            if key is not None:
                await self._redis.delete(*[self._k(kind, key) for kind in _ROUTING_KINDS])
                return
            names = [
                name
                for kind in _ROUTING_KINDS
                async for name in self._redis.scan_iter(match=self._k(kind, "*"))
            ]
            if names:
                await self._redis.delete(*names)
        except (RedisError, OSError) as exc:
            self.shared.lost(exc)

    async def close(self) -> None:
        """Nothing of its own to close: the client is the SharedRedis owner's."""
