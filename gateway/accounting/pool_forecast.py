"""The pools' forecast, kept current: `PoolOutlook` reads the ledger's new requests (the last
hour again, so a slot that was still running is complete), refits the forecast and says what
each pool should run — used by the gateway's `PoolForecaster`, which exports it for an
autoscaler every `capacity.refresh_s` as `spillover_pool_desired_replicas`, and by
`spillover pool launch`, which follows it. Only pools with a `capacity:` are forecast; without
one, nothing here runs or is imported."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from gateway.metrics import GatewayMetrics
from policies.forecast import (
    SLOT_S,
    SLOTS_PER_HOUR,
    Forecast,
    Load,
    fit,
    held_out_error,
    slot_loads,
    slot_of,
)
from policies.pool import Capacity, VllmPoolProvider
from policies.schedule import Choice, Want, desired

log = logging.getLogger("spillover.pool")
_OVERLAP_S = 3600.0


@dataclass(frozen=True, slots=True)
class Outlook:
    """What a pool should run at a moment, and why."""

    choice: Choice
    reason: str  # "forecast", or "warm_floor" when the floor is what binds
    load: Load  # the forecast load it holds


class PoolOutlook:
    """The ledger's demand per pool, read incrementally, and the forecast from it."""

    def __init__(self, ledger_url: str) -> None:
        self._url = ledger_url
        self.pools: dict[str, VllmPoolProvider] = {}
        self._observed: dict[str, dict[int, Load]] = {}
        self._read_until: dict[str, float] = {}
        self._models: dict[str, tuple[Forecast, Load]] = {}  # the fit and its warm floor
        self.errors: dict[str, float] = {}  # held out: the last day's (absent: too little history)

    def configure(self, pools: dict[str, VllmPoolProvider]) -> None:
        self.pools = {n: p for n, p in pools.items() if p.capacity is not None}

    async def refresh(self, now: float) -> None:
        """Read what the ledger has up to `now` that was not read yet, and refit."""
        from gateway.accounting.capacity import read_requests  # the SQL toolkit: only here

        for name, pool in list(self.pools.items()):
            capacity = _capacity(pool)
            since = self._read_until.get(name, now - capacity.history_days * 86_400)
            since -= _OVERLAP_S if name in self._read_until else 0.0
            fresh = [
                (r.start, r.end, r.tokens)
                async for r in read_requests(self._url, since, now, (), (name,))
            ]
            observed = self._observed.setdefault(name, {})
            first_fresh = slot_of(since)
            for slot in [s for s in observed if s >= first_fresh]:
                del observed[slot]
            observed.update(slot_loads(fresh))
            oldest = slot_of(now - capacity.history_days * 86_400)
            for slot in [s for s in observed if s < oldest]:
                del observed[slot]
            self._read_until[name] = now
            model = fit(observed, slot_of(now) + 1)
            day = [model.at(slot_of(now) + i) for i in range(24 * SLOTS_PER_HOUR)]
            off_peak = min(day, key=lambda x: (x.kv_tokens, x.tokens_per_s))
            self._models[name] = (model, off_peak.scaled(1 + capacity.warm_floor_margin))
            error = held_out_error(observed)
            if error is not None:
                self.errors[name] = error

    def at(self, name: str, when: float, gpu: str | None = None) -> Outlook:
        """What pool `name` should run at `when` (`gpu`: on that type only)."""
        pool = self.pools[name]
        capacity = _capacity(pool)
        model, floor = self._models.get(name, (Forecast({}, 1.0), Load()))
        load = model.at(slot_of(when))
        max_kv = pool.admission.max_kv_usage
        choice = desired(capacity, load, max_kv, floor, gpu)
        binding = desired(capacity, load, max_kv, Load(), gpu)
        return Outlook(choice, "forecast" if binding == choice else "warm_floor", load)

    def lead_time_s(self, name: str, gpu: str | None = None) -> float:
        gpus = _capacity(self.pools[name]).gpus
        return gpus[gpu].lead_time_s if gpu else max(g.lead_time_s for g in gpus.values())

    def to_hold(self, name: str, now: float, gpu: str) -> Outlook:
        """What to run now so that every slot from now to one lead time ahead is held: the
        most replicas any of them needs (a replica started now serves one lead time later;
        one stopped now is gone for the whole window)."""
        lead = self.lead_time_s(name, gpu)
        slots = range(slot_of(now), slot_of(now + lead) + 1)
        return max((self.at(name, float(s * SLOT_S), gpu) for s in slots), key=_replicas)


def _replicas(outlook: Outlook) -> int:
    return outlook.choice.replicas


def _capacity(pool: VllmPoolProvider) -> Capacity:
    assert pool.capacity is not None  # only pools with one are configured
    return pool.capacity


class PoolForecaster:
    """The gateway's side: refresh the outlook every `capacity.refresh_s` and export what
    each pool should run one lead time from now."""

    def __init__(self, ledger_url: str, metrics: GatewayMetrics) -> None:
        self.outlook = PoolOutlook(ledger_url)
        self._metrics = metrics
        self._task: asyncio.Task[None] | None = None

    def configure(self, pools: dict[str, VllmPoolProvider]) -> None:
        self.outlook.configure(pools)
        if self.outlook.pools and self._task is None:
            with contextlib.suppress(RuntimeError):  # no loop yet: start() begins it
                self._task = asyncio.get_running_loop().create_task(self._run())

    async def start(self) -> None:
        if self.outlook.pools and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while self.outlook.pools:
            pools = self.outlook.pools.values()
            every = min(_capacity(p).refresh_s for p in pools)
            try:
                await self.refresh(time.time())
            except Exception:  # the ledger away, a bad row: the last figures stay
                log.exception("pool forecast: refresh failed; the last figures stay")
            await asyncio.sleep(every)

    async def refresh(self, now: float) -> None:
        await self.outlook.refresh(now)
        for name in self.outlook.pools:
            self._export(name, now)

    def _export(self, name: str, now: float) -> None:
        ahead = self.outlook.at(name, now + self.outlook.lead_time_s(name))
        m = self._metrics
        for gpu in _capacity(self.outlook.pools[name]).gpus:
            for why in ("forecast", "warm_floor"):
                chosen = (gpu, why) == (ahead.choice.gpu, ahead.reason)
                m.pool_desired_replicas.labels(name, gpu, why).set(
                    ahead.choice.replicas if chosen else 0
                )
        m.pool_forecast.labels(name, "kv_tokens").set(ahead.load.kv_tokens)
        m.pool_forecast.labels(name, "tokens_per_s").set(ahead.load.tokens_per_s)
        m.pool_forecast.labels(name, "concurrency").set(ahead.load.concurrency)
        if name in self.outlook.errors:
            m.pool_forecast_error.labels(name).set(self.outlook.errors[name])


class LedgerPlanner:
    """`spillover pool launch`'s planner for a scheduled pool: the outlook, refreshed from
    the ledger every `capacity.refresh_s` of schedule time; a failed read keeps the last."""

    def __init__(self, ledger_url: str, name: str, pool: VllmPoolProvider) -> None:
        gpu = pool.launch_gpu
        if gpu is None:
            raise ValueError(f"pool {name}: launch.gpu names the GPU type of its replicas")
        self.outlook = PoolOutlook(ledger_url)
        self.outlook.configure({name: pool})
        self._name, self._gpu = name, gpu
        self._every = _capacity(pool).refresh_s
        self._read_at = float("-inf")

    async def prime(self, now: float) -> None:
        await self.outlook.refresh(now)
        self._read_at = now

    async def want(self, now: float) -> Want:
        if now - self._read_at >= self._every:
            self._read_at = now
            try:
                await self.outlook.refresh(now)
            except Exception:  # the ledger away: the last forecast stays
                log.exception(
                    "pool %s: reading the ledger failed; the last forecast stays", self._name
                )
        held = self.outlook.to_hold(self._name, now, self._gpu)
        why = f"{held.reason}, {held.load.kv_tokens:,.0f} KV tokens in flight at p99"
        return Want(held.choice.replicas, why)

    async def _refresh(self, now: float) -> None:
        self._read_at = now
        try:
            await self.outlook.refresh(now)
        except Exception as exc:  # the ledger away or empty: the last forecast (or the floor)
            log.warning(
                "pool %s: cannot read the ledger (%s); the last forecast stays, "
                "min_warm_replicas without one",
                self._name,
                type(exc).__name__,
            )
