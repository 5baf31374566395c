"""`launch.scale: schedule`: the local replicas follow the forecast. Every tick the planner
says how many replicas to hold now (the most any slot up to one lead time ahead needs, so a
replica is started a lead time before its traffic); more than run → the next one is started
(listed only once up and warm); fewer → the last one started is drained and stopped. Never
fewer than the pool's `min_warm_replicas`, never more than `launch` lists. The clock can run
faster than the wall (`Clock(scale=...)`) to rehearse a day in minutes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Protocol

import httpx

from fallback_engine.supervisor import Listed, Printer, ReplicaProcess
from policies.pool import VllmPoolProvider
from policies.schedule import Want


class Planner(Protocol):
    async def prime(self, now: float) -> None:
        """Load what the plan needs (the ledger's history) before the clock starts."""

    async def want(self, now: float) -> Want:
        """Replicas to hold at `now` (schedule time)."""


class Clock:
    """Schedule time: from `start` (epoch seconds), `scale` times as fast as the wall."""

    def __init__(self, start: float | None = None, scale: float = 1.0) -> None:
        self.start = time.time() if start is None else start
        self.scale = scale
        self._t0 = time.monotonic()

    def restart(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._t0) * self.scale

    def label(self) -> str:
        return time.strftime("%a %H:%M", time.gmtime(self.now()))


class ScheduledPool:
    def __init__(
        self,
        name: str,
        pool: VllmPoolProvider,
        planner: Planner,
        clock: Clock,
        out: Printer,
        run_dir: Path,
    ) -> None:
        assert pool.launch is not None and pool.discover is not None
        self.name = name
        self.pool = pool
        self.planner = planner
        self.clock = clock
        self.out = out
        self.idle = [ReplicaProcess(pool, url, run_dir, out) for url in pool.launch_urls]
        self.running: list[tuple[ReplicaProcess, asyncio.Task[None]]] = []
        self.retiring: set[asyncio.Task[None]] = set()

    async def run(self, client: httpx.AsyncClient, listed: Listed) -> None:
        tick_s = min(5.0, max(0.05, 60.0 / self.clock.scale))
        listed.on_change = lambda url, now_listed: self._say(
            f"{'listed' if now_listed else 'unlisted'} {url}"
        )
        try:
            while True:
                want = await self.planner.want(self.clock.now())
                self.step(want, client, listed)
                await asyncio.sleep(tick_s)
        finally:
            await self._stop_all(client, listed)

    def step(self, want: Want, client: httpx.AsyncClient, listed: Listed) -> None:
        """One tick: start or retire at most one replica toward `want`."""
        limit = len(self.running) + len(self.idle)
        target = min(limit, max(self.pool.min_warm_replicas, want.replicas))
        if target > len(self.running) and self.idle:
            process = self.idle.pop(0)
            self._say(f"hold {len(self.running) + 1} ({want.why}): starting {process.url}")
            self.running.append((process, asyncio.create_task(process.watch(client, listed))))
        elif target < len(self.running):
            process, task = self.running.pop()
            self._say(f"hold {len(self.running)} ({want.why}): draining {process.url}")
            task.cancel()
            retire = asyncio.create_task(self._retire(process, task, client, listed))
            self.retiring.add(retire)
            retire.add_done_callback(self.retiring.discard)

    async def _retire(
        self,
        process: ReplicaProcess,
        watching: asyncio.Task[None],
        client: httpx.AsyncClient,
        listed: Listed,
    ) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await watching
        await process.retire(client, listed)
        self.idle.insert(0, process)  # it may be started again, before the others

    async def _stop_all(self, client: httpx.AsyncClient, listed: Listed) -> None:
        """Stopping the supervisor: every replica drained, then stopped."""
        running, self.running = self.running, []
        for _, task in running:
            task.cancel()
        await asyncio.gather(*(t for _, t in running), return_exceptions=True)
        await asyncio.gather(
            *(p.retire(client, listed) for p, _ in running), *self.retiring, return_exceptions=True
        )

    def _say(self, what: str) -> None:
        self.out.print(f"[{self.clock.label()}] pool {self.name}: {what}", highlight=False)
