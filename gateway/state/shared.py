"""The one Redis client of a gateway process and the one view of whether Redis answers.
Routing state, limits and spend counters all go through it: when a call fails, Redis is
marked away once — one log line saying what each of them does meanwhile, one metric — and a
probe brings it back (after each user has pushed what it learnt while alone). While it is
away nobody waits on Redis: each user serves from its local state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from policies.schema import StateConfig

log = logging.getLogger("spillover.state")

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


class SharedRedis:
    def __init__(
        self,
        config: StateConfig,
        outage: Outage | None = None,
        on_change: Callable[[bool], None] | None = None,
        probe_s: float = 1.0,
    ) -> None:
        self.client = connect(config, outage)
        self.prefix = config.key_prefix
        self._config = config
        self._outage = outage
        self.available = True
        self._on_change = on_change
        self._probe_s = probe_s
        self._meanwhile: list[Callable[[], str]] = []
        self._on_return: list[Callable[[], Awaitable[None]]] = []
        self._probe: asyncio.Task[None] | None = None

    def binary(self) -> aioredis.Redis:
        """A client of its own for bytes (the shared one decodes text), with the same
        timeouts and drill hook: the caller closes it."""
        client = connect(self._config, self._outage)
        client.connection_pool.connection_kwargs["decode_responses"] = False
        return client

    def listener(self) -> aioredis.Redis:
        """A client of its own for a subscription, which waits for messages as long as it
        takes (the shared client gives up after `timeout_ms`). The caller closes it."""
        timeout = self._config.timeout_ms / 1000
        return aioredis.from_url(
            self._config.url, socket_connect_timeout=max(timeout, 1.0), decode_responses=True
        )

    def register(
        self,
        meanwhile: Callable[[], str],
        on_return: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """A user of Redis: what it does while Redis is away (for the log line), and what
        it must push back before Redis counts as shared again."""
        self._meanwhile.append(meanwhile)
        if on_return is not None:
            self._on_return.append(on_return)

    def lost(self, exc: BaseException) -> None:
        """A call failed: Redis is away until the probe says otherwise."""
        if not self.available:
            return
        self.available = False
        log.warning(
            "redis unreachable (%s); %s",
            type(exc).__name__,
            "; ".join(describe() for describe in self._meanwhile) or "local state only",
        )
        if self._on_change:
            self._on_change(False)
        self._probe = asyncio.get_running_loop().create_task(self._until_back())

    async def _until_back(self) -> None:
        while True:
            await asyncio.sleep(self._probe_s)
            try:
                await self.client.ping()
                for push in self._on_return:
                    await push()
            except (RedisError, OSError):
                continue
            self.available = True
            log.warning("redis is back; routing state, limits and budgets are shared again")
            if self._on_change:
                self._on_change(True)
            return

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()
