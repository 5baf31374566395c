"""Console sessions signed out before they expire, kept where the gateway's state lives: with
`state.backend: redis`, in one sorted set every worker and replica reads (each process
mirrors it every second, so a request never waits on Redis) and that outlives a restart;
in memory, in this process alone — and then a session from before this process started is
refused, so a restart never brings a signed-out cookie back. Entries go when their session
would have expired, never sooner."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.state.shared import SharedRedis

log = logging.getLogger("spillover.console")


class Revocations:
    def __init__(
        self,
        shared: SharedRedis | None = None,
        sync_s: float = 1.0,
        not_before: float | None = None,
    ) -> None:
        self._shared = shared
        self._key = (shared.prefix if shared else "") + "console:revoked"
        self._local: dict[str, float] = {}  # session id → when it would have expired
        self._sync_s = sync_s
        self._task: asyncio.Task[None] | None = None
        # In memory, what this process has not seen revoked it cannot vouch for.
        if not_before is None:
            not_before = 0.0 if shared else time.time()
        self.not_before = not_before

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._local

    async def add(self, session_id: str, expires: float) -> None:
        self._local[session_id] = expires
        self._prune(time.time())
        if self._shared is None:
            return
        from redis.exceptions import RedisError

        try:
            await self._shared.client.zadd(self._key, {session_id: expires})
        except (RedisError, OSError) as exc:
            self._shared.lost(exc)  # this process still refuses it; others at the next add
            log.warning("console: a sign-out could not be shared (%s)", type(exc).__name__)

    async def sync(self) -> None:
        """This process's copy of every process's sign-outs."""
        if self._shared is None:
            return
        from redis.exceptions import RedisError

        now = time.time()
        try:
            client = self._shared.client
            await client.zremrangebyscore(self._key, "-inf", now)
            found = await client.zrangebyscore(self._key, now, "+inf", withscores=True)
        except (RedisError, OSError) as exc:
            self._shared.lost(exc)
            return
        pairs: list[tuple[bytes | str, float]] = list(found)  # type: ignore[arg-type]
        for member, expires in pairs:
            name = member.decode() if isinstance(member, bytes) else str(member)
            self._local[name] = float(expires)
        self._prune(now)

    def start(self) -> None:
        if self._shared is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.sync()
            await asyncio.sleep(self._sync_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _prune(self, now: float) -> None:
        for session_id in [s for s, expires in self._local.items() if expires <= now]:
            del self._local[session_id]
