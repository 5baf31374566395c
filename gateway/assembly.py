"""Wiring, in one place. The `Core` lives as long as the process: metrics, the ledger and its
accountant, limits and budgets over the state backends, stored responses, tracing. A
`Generation` is one loaded config and what is built from it: the providers and the
pipeline. A reload builds a new generation and swaps it in whole; requests in flight
finish on the generation they started with, whose pools close once they are done."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from fallback_engine.pool import Pool
from gateway.accounting.ledger import LedgerWriter
from gateway.accounting.pool_forecast import PoolForecaster
from gateway.accounting.pricing import ModelPrice, PriceTable, self_hosted_price
from gateway.drill.faults import FaultTable, FaultyProvider
from gateway.keyring.keyring import Keyring, Snapshot
from gateway.keys import KeyStore
from gateway.metrics import GatewayMetrics
from gateway.pipeline.account import Accountant
from gateway.pipeline.admit import Admitter
from gateway.pipeline.attempt import AttemptRunner
from gateway.pipeline.budgets import Budgets
from gateway.pipeline.front import Pipeline, Stages
from gateway.pipeline.prepare import Preparer
from gateway.pipeline.response_cache import ResponseCache
from gateway.providers import ProviderFactory, build_provider
from gateway.providers.base import Provider
from gateway.providers.vllm_pool import VllmPoolAdapter
from gateway.state.answers import AnswerStore, MemoryAnswers, RedisAnswers
from gateway.state.contracts import Limiter, RoutingState, SpendCounters
from gateway.state.limits import MemoryLimiter
from gateway.state.memory import MemoryState
from gateway.state.responses import ResponseStore
from gateway.state.spend import MemorySpendCounters
from gateway.tracing import Tracing
from gateway.upstream.pool import PoolState
from policies.pool import VllmPoolProvider
from policies.route import Target
from policies.schema import GatewayConfig, StateConfig

if TYPE_CHECKING:
    from gateway.state.shared import Outage, SharedRedis

log = logging.getLogger("spillover")


@dataclass(frozen=True)
class StateBackends:
    """Routing state, limit counters and spend counters, all in memory or all in Redis
    through one client whose availability they share."""

    routing: RoutingState
    limiter: Limiter
    spend: SpendCounters
    shared: SharedRedis | None = None


def build_backends(
    config: StateConfig, metrics: GatewayMetrics, outage: Outage | None = None
) -> StateBackends:
    if config.backend == "memory":
        return StateBackends(MemoryState(), MemoryLimiter(), MemorySpendCounters())
    # The Redis client (~8 MB of modules) is imported only for a gateway that uses it.
    from gateway.state.limits_redis import RedisLimiter
    from gateway.state.redis import RedisState
    from gateway.state.shared import SharedRedis
    from gateway.state.spend_redis import RedisSpendCounters

    def changed(up: bool) -> None:
        metrics.state_backend_up.set(1 if up else 0)
        metrics.limits_shared.set(1 if up else 0)

    changed(True)
    shared = SharedRedis(config, outage, on_change=changed)
    return StateBackends(
        RedisState(shared), RedisLimiter(shared), RedisSpendCounters(shared), shared
    )


@dataclass
class Core:
    """What outlives every generation. `build_provider` makes each generation's providers;
    `on_breaker` hears of every circuit that changes phase (the console's incidents)."""

    metrics: GatewayMetrics
    faults: FaultTable  # drills: active faults, kept across reloads
    ledger: LedgerWriter
    accountant: Accountant
    backends: StateBackends
    admitter: Admitter
    budgets: Budgets
    responses: ResponseStore
    tracing: Tracing
    keyring: Keyring
    answers: AnswerStore
    forecaster: PoolForecaster
    build_provider: ProviderFactory = build_provider
    on_breaker: Callable[[Target, str, str], None] | None = None

    def configure(self, config: GatewayConfig, generation: Generation) -> None:
        """What lives across generations takes the new config: prices, limits, budgets."""
        self.accountant.configure(config, generation.self_hosted_prices())
        self.metrics.upstream_pools.source = generation.upstream_pools
        self.admitter.configure(config)
        self.budgets.configure(config, self.accountant.prices)
        self.responses.configure(config.responses)
        self.tracing.configure(config)
        self.forecaster.configure(
            {n: p for n, p in config.providers.items() if isinstance(p, VllmPoolProvider)}
        )

    def use_keyring(self, snapshot: Snapshot) -> None:
        """Stored keys' and teams' limits and budgets, as loaded (a change made anywhere)."""
        keys, teams = snapshot.keys.values(), snapshot.teams.values()
        self.admitter.use_stored(
            {k.name: k.limits for k in keys}, {t.name: t.limits for t in teams}
        )
        self.budgets.use_stored({k.name: k.budget for k in keys}, {t.name: t.budget for t in teams})
        self.metrics.keyring_keys.set(len(snapshot.by_digest))
        self.metrics.keyring_version.set(snapshot.version)

    async def start(self) -> None:
        await self.ledger.start()
        await self.admitter.limiter.start()
        await self.keyring.start()

    async def close(self) -> None:
        await self.forecaster.close()
        await self.answers.close()
        await self.keyring.close()
        await self.ledger.close()
        await self.responses.close()
        self.tracing.shutdown()
        await self.admitter.limiter.close()
        await self.budgets.spend.close()
        await self.backends.routing.close()
        if self.backends.shared is not None:
            await self.backends.shared.close()


def build_core(
    config: GatewayConfig,
    provider_factory: ProviderFactory = build_provider,
    span_exporter: Any = None,
) -> Core:
    metrics = GatewayMetrics()
    faults = FaultTable()
    ledger = LedgerWriter(config.ledger, on_state=partial(_ledger_gauges, metrics))
    accountant = Accountant(
        metrics, PriceTable.load({}), ledger, log_access=config.server.access_log
    )
    # A drill's redis_down fault makes this process's Redis calls fail (routing state,
    # limits and budgets alike); the hook costs one dict check while no fault is set.
    backends = build_backends(config.state, metrics, faults.redis_down_now)
    keyring = _keyring(config, backends)
    core = Core(
        metrics=metrics,
        faults=faults,
        ledger=ledger,
        accountant=accountant,
        backends=backends,
        admitter=Admitter(backends.limiter, metrics),
        budgets=Budgets(backends.spend, metrics),
        responses=ResponseStore(config.ledger.url, config.responses),
        tracing=Tracing(config.tracing, exporter=span_exporter),
        keyring=keyring,
        answers=_answer_store(config, backends),
        forecaster=PoolForecaster(config.ledger.url, metrics),
        build_provider=provider_factory,
    )
    keyring.on_change = core.use_keyring
    keyring.on_check = metrics.keyring_stale.set
    return core


def _answer_store(config: GatewayConfig, backends: StateBackends) -> AnswerStore:
    wanted = config.response_cache
    if wanted.backend == "redis" and backends.shared is not None:
        return RedisAnswers(backends.shared)
    return MemoryAnswers(wanted.max_bytes)


def _keyring(config: GatewayConfig, backends: StateBackends) -> Keyring:
    url = config.ledger.url if config.keyring.enabled else None
    return Keyring(url, config.keyring.refresh_s, shared=backends.shared)


def _ledger_gauges(metrics: GatewayMetrics, ledger: LedgerWriter) -> None:
    m = metrics
    m.ledger_queue.set(ledger.pending())
    m.ledger_spooled.set(ledger.spooled())
    m.ledger_up.set(1 if ledger.database_up else 0)
    m.ledger_journal_bytes.set(ledger.journal.pending_bytes)
    m.ledger_journal_max_bytes.set(ledger.journal.max_bytes)
    m.ledger_errors.set(ledger.errors)
    m.ledger_lost.set(ledger.lost)
    m.ledger_quarantined.set(ledger.quarantine.kept)


@dataclass
class Generation:
    config: GatewayConfig
    providers: dict[str, Provider]
    pipeline: Pipeline
    started: dict[str, bool] = field(default_factory=dict)

    def usable_targets(self) -> dict[str, int]:
        """A target is usable when its provider started and serves one of the route's
        endpoints. Upstream health is not readiness: a degraded upstream must not pull every
        gateway replica out of the load balancer; failover handles it."""
        out: dict[str, int] = {}
        for name, route in self.config.routes.items():
            wanted = set(route.endpoints or ("chat", "completions", "embeddings"))
            out[name] = sum(
                1
                for t in route.targets
                if self.started.get(t.provider) and wanted & self.providers[t.provider].supports
            )
        return out

    def upstream_pools(self) -> Iterator[tuple[str, PoolState]]:
        """Each provider's connection pools, for the metrics."""
        for name, provider in self.providers.items():
            for pool in provider.unwrapped().connections():
                yield name, pool

    def _pool_adapters(self) -> dict[str, VllmPoolAdapter]:
        return {
            name: adapter
            for name, provider in self.providers.items()
            if isinstance(adapter := provider.unwrapped(), VllmPoolAdapter)
        }

    def pools(self) -> dict[str, Pool]:
        """The self-hosted pools, by provider name."""
        return {name: adapter.pool for name, adapter in self._pool_adapters().items()}

    def self_hosted_prices(self) -> dict[str, Callable[[], ModelPrice | None]]:
        """Each pool's price: its share of a replica's GPU time at capacity."""
        return {
            name: partial(
                self_hosted_price,
                adapter.config.gpu_cost_per_hour,
                adapter.config.tokens_per_replica_hour,
            )
            for name, adapter in self._pool_adapters().items()
        }


async def build_generation(
    core: Core, config: GatewayConfig, previous: Generation | None = None
) -> Generation:
    metrics = core.metrics
    providers = {
        name: core.build_provider(name, p, metrics.pool) for name, p in config.providers.items()
    }
    if previous is not None:
        # A reload must not take a warm pool out of service while it re-probes its replicas.
        for name, provider in providers.items():
            old = previous.providers.get(name)
            if old is not None:
                provider.adopt(old)
    faults = core.faults if config.drills.enabled else None
    if faults is not None:

        def fired(kind: str, provider: str) -> None:
            metrics.child(metrics.faults_injected, kind, provider).inc()

        providers = {name: FaultyProvider(p, faults, fired) for name, p in providers.items()}
    generation = Generation(config, providers, Pipeline(_stages(core, config, providers, faults)))
    for name, provider in providers.items():
        try:
            await provider.start()
            generation.started[name] = True
        except Exception:
            log.exception("provider %s failed to start; its targets are unusable", name)
            generation.started[name] = False
    for route, usable in generation.usable_targets().items():
        metrics.routes.labels(route).set(usable)
    metrics.config_loaded.set(time.time())
    return generation


def _stages(
    core: Core, config: GatewayConfig, providers: dict[str, Provider], faults: FaultTable | None
) -> Stages:
    keys = KeyStore(
        config,
        faults.minted_keys if faults is not None else None,
        core.keyring if core.keyring.enabled else None,
    )
    attempts = AttemptRunner(
        providers,
        {name: p.timeouts for name, p in config.providers.items()},
        core.metrics,
        core.backends.routing,
        price_of=core.accountant.price_of,
        reasons=core.accountant.reasons,
        tracing=core.tracing,
        on_breaker=core.on_breaker,
    )
    preparer = Preparer(
        config, keys, providers, core.metrics, core.accountant, core.admitter, core.budgets,
        faults,
    )  # fmt: skip
    return Stages(
        config=config,
        keys=keys,
        preparer=preparer,
        attempts=attempts,
        admitter=core.admitter,
        budgets=core.budgets,
        accountant=core.accountant,
        responses=core.responses,
        metrics=core.metrics,
        tracing=core.tracing,
        answers=ResponseCache(core.answers, core.metrics),
    )


async def close_generation(generation: Generation, grace_s: float) -> None:
    """Close the pools once the requests still running on this generation are done."""
    deadline = time.monotonic() + grace_s
    while generation.pipeline.in_flight and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    for provider in generation.providers.values():
        try:
            await provider.close()
        except Exception:
            log.exception("closing provider %s failed", provider.name)
