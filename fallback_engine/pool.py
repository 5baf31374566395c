"""A pool of vLLM replicas at run time: `acquire` — admission, the replica choice, and the
YAML's answer when the pool is full (queue with a deadline, reject with Retry-After, or cap
the output), with priorities. Which replicas exist and their states is `membership.py`; their
load comes from `scrape_loop.py`; waiting requests are a `waitqueue.py` heap; a request's
place at a replica is a `lease.py` Lease."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import TYPE_CHECKING

from fallback_engine import admission
from fallback_engine.choose import choose
from fallback_engine.lease import Lease
from fallback_engine.load import PoolRequest
from fallback_engine.membership import Membership, Resolve
from fallback_engine.metrics import PoolMetrics
from fallback_engine.prefix import PrefixTable
from fallback_engine.replica import Hold, Replica, ReplicaProbe, State
from fallback_engine.scrape_loop import ScrapeLoop
from fallback_engine.waitqueue import WaitQueue
from policies.pool import VllmPoolProvider

if TYPE_CHECKING:
    import httpx

__all__ = ["Lease", "Pool", "PoolShed"]


class PoolShed(Exception):
    """The pool will not take this request now; `retry_after` is the drain estimate."""

    def __init__(self, pool: str, reason: admission.ShedReason, retry_after: float) -> None:
        super().__init__(f"pool {pool} shed the request: {reason}")
        self.reason = reason
        self.retry_after = retry_after


class Pool:
    def __init__(
        self,
        name: str,
        config: VllmPoolProvider,
        metrics: PoolMetrics | None = None,
        resolve: Resolve | None = None,
        probe: ReplicaProbe | None = None,
    ) -> None:
        self.name = name
        self._probe = probe
        self.config = config
        self.metrics = metrics
        self.members = Membership(name, config, metrics, self._changed, resolve)
        self.scraping = ScrapeLoop(self.members, self._kick)
        self.table = PrefixTable()
        self._waiters: WaitQueue[Lease] = WaitQueue()
        self._turn = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self._client: httpx.AsyncClient | None = None
        self._pool_outstanding = 0  # endpoint mode: tokens in flight through the router
        if metrics is not None:
            metrics.min_warm_replicas.labels(name).set(config.min_warm_replicas)

    @property
    def replicas(self) -> dict[str, Replica]:
        return self.members.replicas

    def ready(self) -> list[Replica]:
        return self.members.ready()

    def paid_replicas(self) -> int:
        return self.members.paid()

    def tokens_per_hour(self) -> float:
        return self.scraping.tokens_per_hour()

    # -- running ----------------------------------------------------------------------------

    async def start(self) -> None:
        prober = self._probe
        if prober is None:
            import httpx

            from fallback_engine.prober import Prober

            self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=64))
            prober = Prober(self.config, self._client)
        self._tasks = [
            asyncio.create_task(self.members.lifecycle_loop(prober)),
            asyncio.create_task(self.scraping.run(prober)),
        ]
        if self.config.discover is not None:
            self._tasks.append(asyncio.create_task(self.members.discover_loop()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._waiters.fail_all(PoolShed(self.name, "no_ready_replica", 1.0))
        if self._client is not None:
            await self._client.aclose()

    def adopt(self, old: Pool) -> None:
        """Take over what a previous generation's pool knew of the same replicas serving the
        same model: their state (a ready replica stays ready), last scrape and prefix table."""
        if old.config.model != self.config.model:
            return
        self.members.adopt(old.members)
        self.table = old.table

    def _changed(self, replica: Replica, state: State) -> None:
        if state in ("unhealthy", "starting"):
            self.table.forget(replica.url)
        self._kick()

    def report_unreachable(self, lease: Lease, why: str, refused: bool) -> bool:
        """A request could not reach its replica: `Membership.unreachable` decides."""
        if lease.replica is None:
            return False
        return self.members.unreachable(lease.replica, why, refused)

    # -- admission --------------------------------------------------------------------------

    def _try(self, request: PoolRequest) -> Lease | admission.ShedReason:
        loads = self.members.loads()
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
        return self._lease(self.replicas[pick.replica], request, pick.reason)

    def _lease(self, replica: Replica, request: PoolRequest, reason: str) -> Lease:
        held = request.tokens if self.config.admission.reserve_output else request.prompt_tokens
        hold = Hold(held, request.prefix, self.config.routing.block_tokens)
        lease = Lease(
            replica.url,
            replica,
            request.tokens,
            None,
            self._done,
            request.prompt_tokens,
            replica.scrapes,
            hold=hold,
        )
        replica.sent(request.tokens, request.prompt_tokens, hold)
        if request.prefix:
            self.table.record(request.prefix, replica.url)
        if self.metrics is not None:
            self.metrics.picks.labels(self.name, replica.url, reason).inc()
            self._show_outstanding(replica)
        return lease

    def _done(self, lease: Lease) -> None:
        if lease.replica is None:
            self._pool_outstanding -= lease.tokens
        else:
            lease.returned()
            if self.metrics is not None:
                self._show_outstanding(lease.replica)
        self._kick()

    def _show_outstanding(self, replica: Replica) -> None:
        assert self.metrics is not None
        self.metrics.outstanding_tokens.labels(self.name, replica.url).set(
            replica.outstanding_tokens
        )

    def _kick(self) -> None:
        """Hand freed room to the queue, critical first, in arrival order within a priority."""
        while (head := self._waiters.head()) is not None:
            result = self._try(head.request)
            if not isinstance(result, Lease):
                return
            self._waiters.pop()
            head.future.set_result(result)
        self._show_queue()

    def _show_queue(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(self.name).set(len(self._waiters))

    def retry_after(self, extra_tokens: int = 0) -> float:
        backlog = sum(r.outstanding_tokens for r in self.replicas.values())
        backlog += self._pool_outstanding + extra_tokens + self._waiters.tokens()
        return admission.retry_after_s(backlog, self.scraping.drain_rate())

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
        if result in ("no_ready_replica", "sheddable"):
            raise self._shed(request, result)
        launch = self.config.launch
        max_model_len = launch.max_model_len if launch is not None else None
        if admission.too_large_for_any(self.members.loads(), request, max_model_len):
            raise self._shed(request, "context_too_large")
        if request.priority == "sheddable":
            raise self._shed(request, result)
        if policy.when_full == "cap_context" and allow_cap:
            lease = self._capped(request)
            if lease is not None:
                return lease
        if policy.when_full == "reject" and request.priority != "critical":
            raise self._shed(request, result)
        return await self._queue(request, wait_s)

    def _capped(self, request: PoolRequest) -> Lease | None:
        """`cap_context`: the request with its output capped, if that fits now."""
        capped = PoolRequest(
            request.prompt_tokens,
            min(request.output_tokens, self.config.admission.cap_max_tokens),
            request.prefix,
            request.priority,
        )
        lease = self._try(capped)
        if not isinstance(lease, Lease):
            return None
        lease.max_tokens = capped.output_tokens
        if self.metrics is not None:
            self.metrics.capped.labels(self.name).inc()
        return lease

    async def _queue(self, request: PoolRequest, wait_s: float | None) -> Lease:
        policy = self.config.admission.queue
        if len(self._waiters) >= policy.max_size:
            raise self._shed(request, "queue_full")
        limit = policy.max_wait_ms / 1000
        if wait_s is not None:
            limit = min(limit, max(0.0, wait_s))
        waiter = self._waiters.push(request)
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
            self._waiters.remove(waiter)
            self._show_queue()
            if self.metrics is not None:
                self.metrics.queue_wait.labels(self.name).observe(time.monotonic() - started)
