"""The scrape loop: every replica's vLLM /metrics read on a jittered interval into its load
(`replica.observe`), the load and pool gauges, and the tokens served over the last hour that
price a self-hosted pool."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable

from fallback_engine import admission
from fallback_engine.membership import Membership
from fallback_engine.replica import Replica, ReplicaProbe
from fallback_engine.scrape import Snapshot


class ScrapeLoop:
    def __init__(self, members: Membership, on_scraped: Callable[[], None]) -> None:
        self.members = members
        self._on_scraped = on_scraped  # the pool: fresh load may make room for the queue
        self._started = time.monotonic()
        self._served: deque[tuple[float, float]] = deque()  # (when, tokens) from scrapes
        self._served_total = 0.0  # their sum: the price asks for it on every pool request

    async def run(self, prober: ReplicaProbe) -> None:
        scrape = self.members.config.scrape
        metrics = self.members.metrics
        while True:
            replicas = [r for r in self.members.replicas.values() if r.state != "draining"]
            snaps = await asyncio.gather(*(prober.scrape(r) for r in replicas))
            for replica, snap in zip(replicas, snaps, strict=True):
                if snap is None:
                    if metrics is not None:
                        metrics.scrape_errors.labels(self.members.name, replica.url).inc()
                    continue
                self._count_served(replica.snapshot, snap)
                replica.observe(snap)
                self._show_load(replica)
            self._show_pool()
            self._on_scraped()
            await asyncio.sleep(
                scrape.every_s * (1 + random.uniform(-scrape.jitter, scrape.jitter))
            )

    def tokens_per_hour(self) -> float:
        """Tokens the pool served over the last hour (or since it started, scaled up, but
        over at least a minute so one busy second does not set the price)."""
        now = time.monotonic()
        self._forget_before(now - 3600)
        span = min(3600.0, max(60.0, now - self._started))
        return self._served_total * 3600 / span

    def drain_rate(self) -> float:
        """Tokens per second the ready replicas are working off."""
        return sum(
            r.rates.prompt_tokens_per_s + r.rates.generation_tokens_per_s
            for r in self.members.ready()
        )

    def _count_served(self, old: Snapshot | None, new: Snapshot) -> None:
        if old is None:
            return
        before = old.prompt_tokens + old.generation_tokens
        after = new.prompt_tokens + new.generation_tokens
        served = after - before if after >= before else after  # a restart counts from zero
        if served > 0:
            self._served.append((new.at, served))
            self._served_total += served
        self._forget_before(new.at - 3600)

    def _forget_before(self, cutoff: float) -> None:
        while self._served and self._served[0][0] < cutoff:
            self._served_total -= self._served.popleft()[1]

    def _show_load(self, replica: Replica) -> None:
        m, snap = self.members.metrics, replica.snapshot
        if m is None or snap is None:
            return
        labels = (self.members.name, replica.url)
        m.kv_usage.labels(*labels).set(snap.kv_usage)
        m.running.labels(*labels).set(snap.running)
        m.waiting.labels(*labels).set(snap.waiting)
        m.preemptions.labels(*labels).set(snap.preemptions)
        rates = replica.rates
        m.prompt_tps.labels(*labels).set(rates.prompt_tokens_per_s)
        m.generation_tps.labels(*labels).set(rates.generation_tokens_per_s)
        for gauge, value in (
            (m.prefix_hit_ratio, rates.prefix_hit_ratio),
            (m.spec_acceptance, rates.spec_acceptance),
            (m.ttft, rates.ttft_s),
            (m.tpot, rates.tpot_s),
        ):
            if value is not None:
                gauge.labels(*labels).set(value)

    def _show_pool(self) -> None:
        metrics, name = self.members.metrics, self.members.name
        if metrics is None:
            return
        ready = self.members.ready()
        usage = admission.pool_kv_usage(self.members.loads())
        metrics.pool_kv_usage.labels(name).set(usage or 0.0)
        metrics.pool_tps.labels(name).set(self.drain_rate())
        queries = sum(r.snapshot.prefix_queries for r in ready if r.snapshot)
        hits = sum(r.snapshot.prefix_hits for r in ready if r.snapshot)
        if queries:
            metrics.pool_prefix_hit_ratio.labels(name).set(hits / queries)
