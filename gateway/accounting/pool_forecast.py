"""The pools' forecast, kept current in the gateway: every `capacity.refresh_s` the ledger's
new requests are read (the last hour again, so a slot that was still running is complete),
the forecast refitted, and what each pool should run one lead time from now exported as
`spillover_pool_desired_replicas` for an autoscaler to act on before the traffic arrives.
Only pools with a `capacity:` are forecast; without one, nothing here runs or is imported."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from gateway.metrics import GatewayMetrics
from policies.forecast import SLOTS_PER_HOUR, Load, fit, slot_loads, slot_of
from policies.pool import VllmPoolProvider
from policies.schedule import desired

log = logging.getLogger("spillover.pool")
_OVERLAP_S = 3600.0


class PoolForecaster:
    def __init__(self, ledger_url: str, metrics: GatewayMetrics) -> None:
        self._url = ledger_url
        self._metrics = metrics
        self._pools: dict[str, VllmPoolProvider] = {}
        self._observed: dict[str, dict[int, Load]] = {}
        self._read_until: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def configure(self, pools: dict[str, VllmPoolProvider]) -> None:
        self._pools = {n: p for n, p in pools.items() if p.capacity is not None}
        if self._pools and self._task is None:
            with contextlib.suppress(RuntimeError):  # no loop yet: start() begins it
                self._task = asyncio.get_running_loop().create_task(self._run())

    async def start(self) -> None:
        if self._pools and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while self._pools:
            every = min(p.capacity.refresh_s for p in self._pools.values() if p.capacity)
            try:
                await self.refresh(time.time())
            except Exception:  # the ledger away, a bad row: the last figures stay
                log.exception("pool forecast: refresh failed; the last figures stay")
            await asyncio.sleep(every)

    async def refresh(self, now: float) -> None:
        from gateway.accounting.capacity import read_requests  # the SQL toolkit: only here

        for name, pool in list(self._pools.items()):
            capacity = pool.capacity
            assert capacity is not None
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
            self._export(name, pool, observed, now)

    def _export(
        self, name: str, pool: VllmPoolProvider, observed: dict[int, Load], now: float
    ) -> None:
        capacity = pool.capacity
        assert capacity is not None
        model = fit(observed, slot_of(now) + 1)
        lead = max(g.lead_time_s for g in capacity.gpus.values())
        ahead = model.at(slot_of(now + lead))
        day = [model.at(slot_of(now) + i) for i in range(24 * SLOTS_PER_HOUR)]
        off_peak = min(day, key=lambda x: (x.kv_tokens, x.tokens_per_s))
        floor = off_peak.scaled(1 + capacity.warm_floor_margin)
        max_kv = pool.admission.max_kv_usage
        choice = desired(capacity, ahead, max_kv, floor)
        binding = desired(capacity, ahead, max_kv, Load())
        reason = "forecast" if binding == choice else "warm_floor"
        m = self._metrics
        for gpu in capacity.gpus:
            for why in ("forecast", "warm_floor"):
                value = choice.replicas if (gpu, why) == (choice.gpu, reason) else 0
                m.pool_desired_replicas.labels(name, gpu, why).set(value)
        m.pool_forecast.labels(name, "kv_tokens").set(ahead.kv_tokens)
        m.pool_forecast.labels(name, "tokens_per_s").set(ahead.tokens_per_s)
        m.pool_forecast.labels(name, "concurrency").set(ahead.concurrency)
