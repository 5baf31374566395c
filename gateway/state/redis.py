"""Routing state shared by many gateway replicas through Redis.

Windows are counted by a Lua script (add and sum in one step). Breaker state is one JSON
value per target, changed by the same pure functions as in memory and written back with a
compare-and-set script, so two replicas never lose each other's transitions. Cool-downs
only ever grow (a max-set script). Every call has a short timeout; while Redis is away the
gateway decides on its local copy, says so in a metric and one log line, and pushes what it
learnt back when Redis returns. It also starts while Redis is down."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from gateway.state.memory import MemoryState
from gateway.state.windows import BUCKET_S, KEEP_S, Outcome
from policies import routing
from policies.routing import Admission, BreakerState, TargetView
from policies.schema import Breaker, FailOverWhen, StateConfig

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


Outage = Callable[[], bool]


class _OutageHook:
    """Mixed into the pool's connection class: while `outage()` holds (a drill's
    `redis_down` fault), every command fails as an unreachable Redis would."""

    outage: Outage

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self.outage():
            raise RedisConnectionError("Redis unreachable (redis_down fault injected by a drill)")
        await super().send_packed_command(command, check_health)  # type: ignore[misc]


def connect(config: StateConfig, outage: Outage | None = None) -> aioredis.Redis:
    """A client whose every call gives up after `timeout_ms`: Redis must never stall a
    request for longer than it takes to decide to do without it."""
    timeout = config.timeout_ms / 1000
    client = aioredis.from_url(
        config.url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
        retry_on_timeout=False,
    )
    if outage is not None:
        pool = client.connection_pool
        bases = (_OutageHook, pool.connection_class)
        hooks = {"outage": staticmethod(outage)}
        pool.connection_class = type("DrillableConnection", bases, hooks)
    return client


def _encode(state: BreakerState) -> str:
    return json.dumps(asdict(state), separators=(",", ":"))


def _decode(raw: str | bytes | None) -> BreakerState:
    return BreakerState(**json.loads(raw)) if raw else BreakerState()


class RedisState:
    backend = "redis"

    def __init__(
        self, config: StateConfig, on_change: Any = None, outage: Outage | None = None
    ) -> None:
        self._redis = connect(config, outage)
        self._prefix = config.key_prefix
        self.local = MemoryState()
        self.available = True
        self._on_change = on_change  # callback(available: bool) for the metric
        self._resync: asyncio.Task[None] | None = None
        self._window_add = self._redis.register_script(_WINDOW_ADD)
        self._cas = self._redis.register_script(_COMPARE_AND_SET)
        self._max_set = self._redis.register_script(_MAX_SET)

    def _k(self, kind: str, key: str) -> str:
        return f"{self._prefix}{kind}:{key}"

    def _lost(self, exc: BaseException) -> None:
        if self.available:
            self.available = False
            log.warning(
                "redis unreachable (%s); routing on local state until it returns",
                type(exc).__name__,
            )
            if self._on_change:
                self._on_change(False)
            self._resync = asyncio.get_running_loop().create_task(self._wait_and_resync())

    async def _wait_and_resync(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._redis.ping()
                await self._push_local()
            except (RedisError, OSError):
                continue
            self.available = True
            log.warning("redis is back; routing state shared again")
            if self._on_change:
                self._on_change(True)
            return

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
            self._lost(exc)
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

    async def admit(self, key: str, now: float, config: Breaker) -> Admission:
        if not self.available:
            return await self.local.admit(key, now, config)
        decision: list[Admission] = []

        def change(state: BreakerState) -> BreakerState:
            verdict, new = routing.admit(state, now, config)
            decision[:] = [verdict]
            return new

        try:
            self.local.breakers[key] = await self._change(key, change)
        except (RedisError, OSError) as exc:
            self._lost(exc)
            return await self.local.admit(key, now, config)
        return decision[0]

    async def record(
        self, key: str, outcome: Outcome, now: float, rules: FailOverWhen, config: Breaker
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
            self._lost(exc)
            return self.local.apply(key, outcome, local_stats, now, rules, config)
        self.local.breakers[key] = state
        return state

    async def _grow(self, kind: str, key: str, until: float) -> None:
        if not self.available:
            return
        try:
            await self._max_set(keys=[self._k(kind, key)], args=[repr(until)])
        except (RedisError, OSError) as exc:
            self._lost(exc)

    async def cool_down(self, key: str, until: float) -> None:
        await self.local.cool_down(key, until)
        await self._grow("cool", key, until)

    async def limit_headroom(self, key: str, until: float) -> None:
        await self.local.limit_headroom(key, until)
        await self._grow("room", key, until)

    def describe(self, now: float, window_s: float) -> dict[str, Any]:
        return self.local.describe(now, window_s)

    def window_stats(self, key: str, now: float, window_s: float) -> routing.WindowStats:
        return self.local.window_stats(key, now, window_s)

    async def reset(self) -> None:
        """Forget everything observed, here and for every replica sharing this prefix."""
        await self.local.reset()
        try:
            names = [name async for name in self._redis.scan_iter(match=self._prefix + "*")]
            if names:
                await self._redis.delete(*names)
        except (RedisError, OSError) as exc:
            self._lost(exc)

    async def close(self) -> None:
        if self._resync is not None:
            self._resync.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._resync
        await self._redis.aclose()
