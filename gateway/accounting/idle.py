"""What a self-hosted pool cost over a period against what its requests were billed: a
request pays its share of GPU time at the pool's capacity, so a quiet pool's unused hours
are never charged to anyone — they are shown here, as the pool's idle cost, instead."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.accounting.reports import SpendRow
from policies.pool import VllmPoolProvider
from policies.schema import GatewayConfig


@dataclass(frozen=True, slots=True)
class PoolPeriod:
    provider: str
    replicas: int
    hours: float
    capacity_usd: float  # gpu_cost_per_hour x replicas x hours
    billed_usd: float  # what the period's requests on the pool were charged
    idle_usd: float  # capacity not sold to a request (never below 0)

    @property
    def utilisation(self) -> float:
        return self.billed_usd / self.capacity_usd if self.capacity_usd else 0.0


def pool_periods(
    config: GatewayConfig, by_provider: list[SpendRow], since: float, until: float
) -> list[PoolPeriod]:
    """Each priced pool with listed replicas (a discovered pool's count varies: not shown);
    `by_provider` is the period's spend grouped by provider alone."""
    billed = {row.group["provider"]: row.spend_usd for row in by_provider}
    hours = max(0.0, until - since) / 3600
    periods = []
    for name, provider in config.providers.items():
        if not isinstance(provider, VllmPoolProvider) or not provider.gpu_cost_per_hour:
            continue
        replicas = len(provider.replicas)
        if not replicas:
            continue
        capacity = provider.gpu_cost_per_hour * replicas * hours
        paid = billed.get(name, 0.0)
        periods.append(PoolPeriod(name, replicas, hours, capacity, paid, max(0.0, capacity - paid)))
    return periods
