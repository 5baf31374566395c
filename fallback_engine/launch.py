"""`spillover pool launch`: the local replicas of every pool with a `launch` section, until
SIGINT or SIGTERM — all of them (`launch.scale: all`, one `ReplicaProcess` each, restarted
when they exit) or as many as the forecast says (`schedule`: `autoscale.ScheduledPool`). A
stop drains the replicas a discovery file lists (within `drain_timeout_s`) before stopping
them; replicas named in the config are stopped at once."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Mapping
from pathlib import Path

import httpx

from fallback_engine.autoscale import Clock, Planner, ScheduledPool
from fallback_engine.supervisor import Listed, Printer, ReplicaProcess
from policies.pool import VllmPoolProvider
from policies.schema import GatewayConfig


def launchable(config: GatewayConfig, only: str | None) -> list[tuple[str, VllmPoolProvider]]:
    pools = [
        (name, p)
        for name, p in config.providers.items()
        if isinstance(p, VllmPoolProvider) and (only is None or name == only)
    ]
    if not pools or not all(p.launch is not None for _, p in pools):
        raise ValueError("no vllm_pool provider with a 'launch' section to start")
    return pools


def scheduled(pools: list[tuple[str, VllmPoolProvider]]) -> list[str]:
    """The pools that follow the schedule (`launch.scale: schedule`)."""
    return [n for n, p in pools if p.launch is not None and p.launch.scale == "schedule"]


async def supervise_pools(
    pools: list[tuple[str, VllmPoolProvider]],
    out: Printer,
    run_dir: Path = Path(".spillover"),
    planners: Mapping[str, Planner] | None = None,
    clock: Clock | None = None,
) -> None:
    """Run the pools' replicas until SIGINT/SIGTERM (`planners`: one per scheduled pool)."""
    planners = planners or {}
    clock = clock or Clock()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    for name in scheduled(pools):
        await planners[name].prime(clock.now())
    clock.restart()  # the history is read: schedule time starts now
    processes: list[tuple[ReplicaProcess, Listed]] = []
    async with httpx.AsyncClient() as client:
        tasks = []
        for name, pool in pools:
            listed = Listed(pool.discover.file if pool.discover is not None else None)
            if name in planners:
                follow = ScheduledPool(name, pool, planners[name], clock, out, run_dir)
                tasks.append(asyncio.create_task(follow.run(client, listed)))
                continue
            for url in pool.launch_urls:
                process = ReplicaProcess(pool, url, run_dir, out)
                processes.append((process, listed))
                tasks.append(asyncio.create_task(process.watch(client, listed)))
        waiting = asyncio.create_task(stopping.wait())
        try:
            done, _ = await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done - {waiting}:
                task.result()  # a loop that ended on an error: raise it here
        finally:
            for task in [waiting, *tasks]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*(p.retire(client, listed) for p, listed in processes))
