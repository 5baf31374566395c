"""A pool of vLLM replicas at run time: discovery, the lifecycle and scrape loops, and
`acquire` — admission, the replica choice, and the YAML's answer when the pool is full
(queue with a deadline, reject with Retry-After, or cap the output), with priorities."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from fallback_engine import admission
from fallback_engine.choose import choose
from fallback_engine.load import PoolRequest, ReplicaLoad
from fallback_engine.metrics import STATES, PoolMetrics
from fallback_engine.prefix import PrefixTable
from fallback_engine.replica import Hold, Prober, Replica, State
from fallback_engine.scrape import Snapshot
from policies.pool import PRIORITY_RANK, VllmPoolProvider

log = logging.getLogger("spillover.pool")


class PoolShed(Exception):
    """The pool will not take this request now; `retry_after` is the drain estimate."""

    def __init__(self, pool: str, reason: admission.ShedReason, retry_after: float) -> None:
        super().__init__(f"pool {pool} shed the request: {reason}")
        self.reason = reason
        self.retry_after = retry_after


@dataclass(eq=False)
class Lease:
    """A request's place at a replica (or at the pool's router); release it exactly once."""

    base_url: str
    replica: Replica | None
    tokens: int
    max_tokens: int | None = None  # set when the pool capped the request's output
    _release: Callable[[Lease], None] | None = None
    prompt_tokens: int = 0
    scrape: int = 0  # the replica's scrape count when the request was sent
    prefilling: bool = True  # no token back yet
    hold: Hold | None = None  # the KV promised at the replica, given back on release

    def first_token(self) -> None:
        """The replica answered with its first token: this prompt's prefill is done."""
        if self.prefilling:
            self.prefilling = False
            if self.replica is not None:
                self.replica.pending_prefill_tokens -= self.prompt_tokens

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release(self)


@dataclass(order=True)
class _Waiter:
    rank: int
    seq: int
    request: PoolRequest = field(compare=False)
    future: asyncio.Future[Lease] = field(compare=False)


class Pool:
    def __init__(
        self,
        name: str,
        config: VllmPoolProvider,
        metrics: PoolMetrics | None = None,
        resolve: Callable[[str, int], Awaitable[list[str]]] | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.metrics = metrics
        self.replicas: dict[str, Replica] = {u.rstrip("/"): Replica(u) for u in config.replicas}
        self.table = PrefixTable()
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()
        self._turn = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._resolve = resolve or _resolve
        self._pool_outstanding = 0  # endpoint mode: tokens in flight through the router
        self._started = time.monotonic()
        self._served: deque[tuple[float, float]] = deque()  # (when, tokens) from scrapes
        if metrics is not None:
            metrics.min_warm_replicas.labels(name).set(config.min_warm_replicas)
        for replica in self.replicas.values():
            self._show_state(replica)

    # -- running ----------------------------------------------------------------------------

    async def start(self) -> None:
        self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=64))
        prober = Prober(self.config, self._client)
        self._tasks = [
            asyncio.create_task(self._lifecycle_loop(prober)),
            asyncio.create_task(self._scrape_loop(prober)),
        ]
        if self.config.discover is not None:
            self._tasks.append(asyncio.create_task(self._discover_loop()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(PoolShed(self.name, "no_ready_replica", 1.0))
        self._waiters.clear()
        if self._client is not None:
            await self._client.aclose()

    def adopt(self, old: Pool) -> None:
        """Take over what a previous generation's pool knew of the same replicas serving the
        same model: their state (a ready replica stays ready), last scrape and prefix table."""
        if old.config.model != self.config.model:
            return
        if self.config.discover is not None and self.config.discover == old.config.discover:
            for url, known in old.replicas.items():
                if known.state != "draining":
                    self.replicas.setdefault(url, Replica(url))
        for url, replica in self.replicas.items():
            previous = old.replicas.get(url)
            if previous is not None and previous.state in ("ready", "unhealthy"):
                replica.state = previous.state
                replica.snapshot, replica.rates = previous.snapshot, previous.rates
                self._show_state(replica)
        self.table = old.table

    def ready(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.state == "ready"]

    def _set_state(self, replica: Replica, state: State, why: str = "") -> None:
        if replica.state == state:
            return
        log.info("pool %s: %s %s -> %s %s", self.name, replica.url, replica.state, state, why)
        replica.state = state
        replica.since = time.monotonic()
        if state in ("unhealthy", "starting"):
            self.table.forget(replica.url)
        self._show_state(replica)
        if self.metrics is not None:
            self.metrics.transitions.labels(self.name, replica.url, state).inc()
        self._kick()

    def _show_state(self, replica: Replica) -> None:
        if self.metrics is None:
            return
        for state in STATES:
            value = 1 if state == replica.state else 0
            self.metrics.replica_state.labels(self.name, replica.url, state).set(value)
        self.metrics.warm_replicas.labels(self.name).set(len(self.ready()))

    async def _check(self, prober: Prober, replica: Replica) -> None:
        if replica.state == "draining":
            if replica.outstanding_requests == 0:
                del self.replicas[replica.url]
                self._show_state(replica)
            return
        healthy = await prober.healthy(replica)
        if replica.state == "ready":
            replica.health_failures = 0 if healthy else replica.health_failures + 1
            if replica.health_failures >= self.config.health.unhealthy_after:
                self._set_state(replica, "unhealthy", replica.last_error)
            return
        if not healthy:
            return
        self._set_state(replica, "warming")
        if await prober.warm_up(replica):
            replica.health_failures = 0
            self._set_state(replica, "ready")
        else:
            self._set_state(replica, "unhealthy", replica.last_error)

    async def _lifecycle_loop(self, prober: Prober) -> None:
        while True:
            await asyncio.gather(
                *(self._check(prober, r) for r in list(self.replicas.values())),
                return_exceptions=True,
            )
            await asyncio.sleep(self.config.health.every_s)

    async def _scrape_loop(self, prober: Prober) -> None:
        scrape = self.config.scrape
        while True:
            replicas = [r for r in self.replicas.values() if r.state != "draining"]
            snaps = await asyncio.gather(*(prober.scrape(r) for r in replicas))
            for replica, snap in zip(replicas, snaps, strict=True):
                if snap is None:
                    if self.metrics is not None:
                        self.metrics.scrape_errors.labels(self.name, replica.url).inc()
                    continue
                self._count_served(replica.snapshot, snap)
                replica.observe(snap)
                self._show_load(replica)
            self._show_pool()
            self._kick()
            await asyncio.sleep(
                scrape.every_s * (1 + random.uniform(-scrape.jitter, scrape.jitter))
            )

    async def _discover_loop(self) -> None:
        discover = self.config.discover
        assert discover is not None
        while True:
            try:
                hosts = await self._resolve(discover.dns, discover.port)
            except OSError as exc:
                log.warning("pool %s: cannot resolve %s: %s", self.name, discover.dns, exc)
            else:
                urls = {f"{discover.scheme}://{h}:{discover.port}" for h in hosts}
                for url in urls - set(self.replicas):
                    self.replicas[url] = Replica(url)
                    self._show_state(self.replicas[url])
                for url, replica in self.replicas.items():
                    if url not in urls:
                        self._set_state(replica, "draining", "left discovery")
            await asyncio.sleep(discover.every_s)

    def _show_load(self, replica: Replica) -> None:
        m, snap = self.metrics, replica.snapshot
        if m is None or snap is None:
            return
        labels = (self.name, replica.url)
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
        if self.metrics is None:
            return
        ready = self.ready()
        loads = [r.load(time.monotonic(), self.config.scrape.stale_after_s) for r in ready]
        usage = admission.pool_kv_usage(loads)
        self.metrics.pool_kv_usage.labels(self.name).set(usage or 0.0)
        self.metrics.pool_tps.labels(self.name).set(self._drain_rate())
        queries = sum(r.snapshot.prefix_queries for r in ready if r.snapshot)
        hits = sum(r.snapshot.prefix_hits for r in ready if r.snapshot)
        if queries:
            self.metrics.pool_prefix_hit_ratio.labels(self.name).set(hits / queries)

    def _count_served(self, old: Snapshot | None, new: Snapshot) -> None:
        if old is None:
            return
        before = old.prompt_tokens + old.generation_tokens
        after = new.prompt_tokens + new.generation_tokens
        served = after - before if after >= before else after  # a restart counts from zero
        if served > 0:
            self._served.append((new.at, served))
        while self._served and self._served[0][0] < new.at - 3600:
            self._served.popleft()

    def tokens_per_hour(self) -> float:
        """Tokens the pool served over the last hour (or since it started, scaled up, but
        over at least a minute so one busy second does not set the price)."""
        now = time.monotonic()
        span = min(3600.0, max(60.0, now - self._started))
        return sum(tokens for at, tokens in self._served if at >= now - span) * 3600 / span

    def paid_replicas(self) -> int:
        """Replicas whose GPUs cost money now: every one but those already draining."""
        return sum(1 for r in self.replicas.values() if r.state != "draining")

    def _drain_rate(self) -> float:
        return sum(
            r.rates.prompt_tokens_per_s + r.rates.generation_tokens_per_s for r in self.ready()
        )

    # -- admission --------------------------------------------------------------------------

    def _loads(self) -> list[ReplicaLoad]:
        now, stale = time.monotonic(), self.config.scrape.stale_after_s
        return [r.load(now, stale) for r in self.ready()]

    def _try(self, request: PoolRequest) -> Lease | admission.ShedReason:
        loads = self._loads()
        if not loads:
            return "no_ready_replica"
        policy = self.config.admission
        if request.priority == "sheddable" and admission.shed_sheddable(loads, policy):
            return "sheddable"
        fit, _ = admission.eligible(loads, request, policy)
        if not fit:
            return "kv_full"
        if self.config.endpoint is not None:
            self._pool_outstanding += request.tokens
            return Lease(self.config.endpoint.rstrip("/"), None, request.tokens, None, self._done)
        pick = choose(fit, request, self.config.routing, self.table, next(self._turn))
        replica = self.replicas[pick.replica]
        replica.outstanding_tokens += request.tokens
        replica.outstanding_requests += 1
        replica.pending_prefill_tokens += request.prompt_tokens
        replica.unscraped_tokens += request.prompt_tokens
        held = request.tokens if self.config.admission.reserve_output else request.prompt_tokens
        hold = Hold(held, request.prefix, self.config.routing.block_tokens)
        replica.hold(hold)
        if request.prefix:
            self.table.record(request.prefix, replica.url)
        if self.metrics is not None:
            self.metrics.picks.labels(self.name, replica.url, pick.reason).inc()
            self.metrics.outstanding_tokens.labels(self.name, replica.url).set(
                replica.outstanding_tokens
            )
        return Lease(
            replica.url,
            replica,
            request.tokens,
            None,
            self._done,
            request.prompt_tokens,
            replica.scrapes,
            hold=hold,
        )

    def _done(self, lease: Lease) -> None:
        replica = lease.replica
        if replica is None:
            self._pool_outstanding -= lease.tokens
        else:
            lease.first_token()
            replica.outstanding_tokens -= lease.tokens
            replica.outstanding_requests -= 1
            if lease.hold is not None:
                replica.unhold(lease.hold)
            if replica.scrapes == lease.scrape:  # not yet in a scrape: its blocks are free now
                replica.unscraped_tokens = max(0, replica.unscraped_tokens - lease.prompt_tokens)
            else:  # the last scrape counted its blocks, which are free now
                replica.released_tokens += lease.tokens
            if self.metrics is not None:
                self.metrics.outstanding_tokens.labels(self.name, replica.url).set(
                    replica.outstanding_tokens
                )
        self._kick()

    def _kick(self) -> None:
        """Hand freed room to the queue, critical first, in arrival order within a priority."""
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():
                self._waiters.pop(0)
                continue
            result = self._try(head.request)
            if not isinstance(result, Lease):
                return
            self._waiters.pop(0)
            head.future.set_result(result)
        self._show_queue()

    def _show_queue(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(self.name).set(len(self._waiters))

    def retry_after(self, extra_tokens: int = 0) -> float:
        backlog = sum(r.outstanding_tokens for r in self.replicas.values())
        backlog += self._pool_outstanding + extra_tokens
        backlog += sum(w.request.tokens for w in self._waiters)
        return admission.retry_after_s(backlog, self._drain_rate())

    def _shed(self, request: PoolRequest, reason: admission.ShedReason) -> PoolShed:
        if self.metrics is not None:
            self.metrics.shed.labels(self.name, reason, request.priority).inc()
        return PoolShed(self.name, reason, self.retry_after(request.tokens))

    async def acquire(
        self, request: PoolRequest, wait_s: float | None = None, allow_cap: bool = False
    ) -> Lease:
        """A lease at a replica with room, or `PoolShed`. `wait_s` is what remains of the
        request's own deadline: a queued request never waits past it."""
        result = self._try(request)
        if isinstance(result, Lease):
            return result
        policy = self.config.admission
        capacity = max((r.kv_capacity_tokens or 0 for r in self._loads()), default=0) or None
        if result in ("no_ready_replica", "sheddable"):
            raise self._shed(request, result)
        if capacity is not None and request.tokens > capacity:
            raise self._shed(request, "context_too_large")
        if request.priority == "sheddable":
            raise self._shed(request, result)
        if policy.when_full == "cap_context" and allow_cap:
            capped = PoolRequest(
                request.prompt_tokens,
                min(request.output_tokens, policy.cap_max_tokens),
                request.prefix,
                request.priority,
            )
            lease = self._try(capped)
            if isinstance(lease, Lease):
                lease.max_tokens = capped.output_tokens
                if self.metrics is not None:
                    self.metrics.capped.labels(self.name).inc()
                return lease
        if policy.when_full == "reject" and request.priority != "critical":
            raise self._shed(request, result)
        return await self._queue(request, wait_s)

    async def _queue(self, request: PoolRequest, wait_s: float | None) -> Lease:
        policy = self.config.admission.queue
        if len(self._waiters) >= policy.max_size:
            raise self._shed(request, "queue_full")
        limit = policy.max_wait_ms / 1000
        if wait_s is not None:
            limit = min(limit, max(0.0, wait_s))
        loop = asyncio.get_running_loop()
        waiter = _Waiter(
            PRIORITY_RANK[request.priority], next(self._seq), request, loop.create_future()
        )
        self._waiters.append(waiter)
        self._waiters.sort()
        self._show_queue()
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                return await asyncio.shield(waiter.future)
        except TimeoutError:
            if waiter.future.done() and not waiter.future.cancelled():
                return waiter.future.result()  # admitted at the last moment
            raise self._shed(request, "queue_timeout") from None
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                waiter.future.result().release()
            raise
        finally:
            if not waiter.future.done():
                waiter.future.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            self._show_queue()
            if self.metrics is not None:
                self.metrics.queue_wait.labels(self.name).observe(time.monotonic() - started)

    def report_unreachable(self, lease: Lease, why: str, refused: bool) -> bool:
        """A request could not reach its replica. Refused or reset: the process is gone, out
        of rotation now. Timed out: maybe only busy — one more health failure, out at the
        health check's own threshold, and never the last ready replica (like Envoy's panic
        threshold: passive evidence alone does not empty the pool; the health check can).
        Whether the replica is out of rotation (now, or already: the requests in flight there
        when it died fail one after another)."""
        replica = lease.replica
        if replica is None:
            return False
        if replica.state != "ready":
            return True
        replica.last_error = why
        if not refused:
            replica.health_failures += 1
            threshold = replica.health_failures >= self.config.health.unhealthy_after
            if not threshold or len(self.ready()) <= 1:
                return False
        self._set_state(replica, "unhealthy", why)
        return True


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out = []
    for family, _, _, _, address in infos:
        ip = str(address[0])
        out.append(f"[{ip}]" if family == socket.AF_INET6 else ip)
    return sorted(set(out))
