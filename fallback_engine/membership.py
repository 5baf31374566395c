"""Which replicas the pool has and what state each is in: the configured or discovered set,
the lifecycle loop that health-checks and warms them (see `replica.py` for the states), and
the replica-state metrics."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable

from fallback_engine.listing import ListingError, read_listing
from fallback_engine.load import ReplicaLoad
from fallback_engine.metrics import STATES, PoolMetrics
from fallback_engine.replica import Replica, ReplicaProbe, State
from policies.pool import VllmPoolProvider

log = logging.getLogger("spillover.pool")
Resolve = Callable[[str, int], Awaitable[list[str]]]


class Membership:
    def __init__(
        self,
        name: str,
        config: VllmPoolProvider,
        metrics: PoolMetrics | None,
        on_change: Callable[[Replica, State], None],
        resolve: Resolve | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.metrics = metrics
        self.replicas: dict[str, Replica] = {u.rstrip("/"): Replica(u) for u in config.replicas}
        self._on_change = on_change  # the pool: forget a leaving replica, hand out freed room
        self._resolve = resolve or resolve_dns
        for replica in self.replicas.values():
            self.show(replica)

    def ready(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state == "ready"]

    def loads(self) -> list[ReplicaLoad]:
        """What the ready replicas hold now (a stale scrape counts as unknown load)."""
        now, stale = time.monotonic(), self.config.scrape.stale_after_s
        return [r.load(now, stale) for r in self.ready()]

    def paid(self) -> int:
        """Replicas whose GPUs cost money now: every one but those already draining."""
        return sum(1 for r in self.replicas.values() if r.state != "draining")

    def adopt(self, old: Membership) -> None:
        """Keep what a previous generation knew of the same replicas serving the same model:
        a ready replica stays ready, with its last scrape."""
        if self.config.discover is not None and self.config.discover == old.config.discover:
            for url, known in old.replicas.items():
                if known.state != "draining":
                    self.replicas.setdefault(url, Replica(url))
        for url, replica in self.replicas.items():
            previous = old.replicas.get(url)
            if previous is not None and previous.state in ("ready", "unhealthy"):
                replica.take_over(previous)
                self.show(replica)

    def set_state(self, replica: Replica, state: State, why: str = "") -> bool:
        """Move `replica` to `state`; False when it is there already or draining."""
        before = replica.state
        if not replica.move_to(state):
            return False
        log.info("pool %s: %s %s -> %s %s", self.name, replica.url, before, state, why)
        self.show(replica)
        if self.metrics is not None:
            self.metrics.transitions.labels(self.name, replica.url, state).inc()
        self._on_change(replica, state)
        return True

    def show(self, replica: Replica) -> None:
        if self.metrics is None:
            return
        for state in STATES:
            value = 1 if state == replica.state else 0
            self.metrics.replica_state.labels(self.name, replica.url, state).set(value)
        self.metrics.warm_replicas.labels(self.name).set(len(self.ready()))

    async def check(self, prober: ReplicaProbe, replica: Replica) -> None:
        if replica.state == "draining":
            if replica.outstanding_requests == 0:
                del self.replicas[replica.url]
                self.show(replica)
            return
        healthy = await prober.healthy(replica)
        if replica.state == "ready":
            if replica.checked(healthy) >= self.config.health.unhealthy_after:
                self.set_state(replica, "unhealthy", replica.last_error)
            return
        if not healthy or not self.set_state(replica, "warming"):
            return  # down, or it left discovery while we asked (draining is final)
        if await prober.warm_up(replica):
            replica.checked(True)
            self.set_state(replica, "ready")
        else:
            self.set_state(replica, "unhealthy", replica.last_error)

    async def lifecycle_loop(self, prober: ReplicaProbe) -> None:
        while True:
            await asyncio.gather(
                *(self.check(prober, r) for r in list(self.replicas.values())),
                return_exceptions=True,
            )
            await asyncio.sleep(self.config.health.every_s)

    async def discover_loop(self) -> None:
        discover = self.config.discover
        assert discover is not None
        while True:
            urls = await self._discovered()
            if urls is not None:
                for url in urls - set(self.replicas):
                    self.replicas[url] = Replica(url)
                    self.show(self.replicas[url])
                for url, replica in list(self.replicas.items()):
                    if url not in urls:
                        self.set_state(replica, "draining", "left discovery")
            await asyncio.sleep(discover.every_s)

    async def _discovered(self) -> set[str] | None:
        """The replicas discovery lists now; None when it cannot tell (the last set stays)."""
        discover = self.config.discover
        assert discover is not None
        if discover.file is not None:
            try:
                return set(read_listing(discover.file))
            except ListingError as exc:
                log.warning("pool %s: %s; the replicas stay as they were", self.name, exc)
                return None
        assert discover.dns is not None
        try:
            hosts = await self._resolve(discover.dns, discover.port)
        except OSError as exc:
            log.warning("pool %s: cannot resolve %s: %s", self.name, discover.dns, exc)
            return None
        return {f"{discover.scheme}://{h}:{discover.port}" for h in hosts}

    def unreachable(self, replica: Replica, why: str, refused: bool) -> bool:
        """A request could not reach `replica`. Refused or reset: the process is gone, out of
        rotation now. Timed out: maybe only busy — one more health failure, out at the health
        check's own threshold, and never the last ready replica (like Envoy's panic threshold:
        passive evidence alone does not empty the pool; the health check can). Whether the
        replica is out of rotation (now, or already: the requests in flight there when it
        died fail one after another)."""
        if replica.state != "ready":
            return True
        failures = replica.failed_passively(why, counts=not refused)
        if not refused:
            threshold = failures >= self.config.health.unhealthy_after
            if not threshold or len(self.ready()) <= 1:
                return False
        self.set_state(replica, "unhealthy", why)
        return True


async def resolve_dns(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out = []
    for family, _, _, _, address in infos:
        ip = str(address[0])
        out.append(f"[{ip}]" if family == socket.AF_INET6 else ip)
    return sorted(set(out))
