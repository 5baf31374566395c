"""One loaded config and everything built from it: providers, the attempt runner, the hot
path app. A reload builds a new generation and swaps it in whole; requests in flight finish
on the generation they started with, whose pools close once they are done."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from fallback_engine.pool import Pool
from gateway.accounting.pricing import ModelPrice, self_hosted_price
from gateway.drill.faults import FaultTable, FaultyProvider
from gateway.http.heavy_lane import HeavyLane
from gateway.http.proxy import ProxyApp
from gateway.metrics import GatewayMetrics
from gateway.pipeline.account import Accountant
from gateway.pipeline.admit import Admitter
from gateway.pipeline.attempt import AttemptRunner
from gateway.pipeline.budgets import Budgets
from gateway.providers import ProviderFactory, build_provider
from gateway.providers.base import Provider
from gateway.providers.vllm_pool import VllmPoolAdapter
from gateway.state.contracts import RoutingState
from gateway.state.responses import ResponseStore
from gateway.tracing import Tracing
from policies.route import Target
from policies.schema import GatewayConfig

log = logging.getLogger("spillover")


def unwrapped(provider: Provider | None) -> Provider | None:
    """The adapter behind a drill's fault wrapper."""
    return provider.inner if isinstance(provider, FaultyProvider) else provider


@dataclass
class Generation:
    config: GatewayConfig
    providers: dict[str, Provider]
    proxy: ProxyApp
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

    def _pool_adapters(self) -> dict[str, VllmPoolAdapter]:
        return {
            name: adapter
            for name, provider in self.providers.items()
            if isinstance(adapter := unwrapped(provider), VllmPoolAdapter)
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
    config: GatewayConfig,
    metrics: GatewayMetrics,
    accountant: Accountant,
    state: RoutingState,
    admitter: Admitter,
    budgets: Budgets,
    responses: ResponseStore,
    tracing: Tracing,
    previous: Generation | None = None,
    faults: FaultTable | None = None,
    build: ProviderFactory = build_provider,
    on_breaker: Callable[[Target, str, str], None] | None = None,
    lane: HeavyLane | None = None,
) -> Generation:
    providers = {name: build(name, p, metrics.pool) for name, p in config.providers.items()}
    if previous is not None:
        # A reload must not take a warm pool out of service while it re-probes its replicas.
        for name, provider in providers.items():
            old = unwrapped(previous.providers.get(name))
            if isinstance(provider, VllmPoolAdapter) and isinstance(old, VllmPoolAdapter):
                provider.pool.adopt(old.pool)
    if config.drills.enabled and faults is not None:

        def fired(kind: str, provider: str) -> None:
            metrics.child(metrics.faults_injected, kind, provider).inc()

        providers = {name: FaultyProvider(p, faults, fired) for name, p in providers.items()}
    attempts = AttemptRunner(
        providers,
        {name: p.timeouts for name, p in config.providers.items()},
        metrics,
        state,
        price_of=accountant.price_of,
        reasons=accountant.reasons,
        tracing=tracing,
        on_breaker=on_breaker,
    )
    generation = Generation(
        config,
        providers,
        ProxyApp(
            config,
            providers,
            metrics,
            accountant,
            attempts,
            admitter,
            budgets,
            responses,
            tracing,
            faults if config.drills.enabled else None,
            lane,
        ),
    )
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


async def close_generation(generation: Generation, grace_s: float) -> None:
    """Close the pools once the requests still running on this generation are done."""
    deadline = time.monotonic() + grace_s
    while generation.proxy.in_flight and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    for provider in generation.providers.values():
        try:
            await provider.close()
        except Exception:
            log.exception("closing provider %s failed", provider.name)
