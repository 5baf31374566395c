"""What the console may see and do of the running gateway: the admin port, plus the
incidents, the sampled series, the pools and the counters behind limits and budgets."""

from __future__ import annotations

from typing import Protocol

from fallback_engine.pool import Pool
from gateway.http.admin_port import AdminPort
from gateway.http.console.sampler import Sampler
from gateway.keys import KeyStore
from gateway.metrics import GatewayMetrics
from gateway.state.contracts import Limiter, SpendCounters


class ConsolePort(AdminPort, Protocol):
    config_path: str
    sampler: Sampler | None
    metrics: GatewayMetrics

    def keys(self) -> KeyStore:
        """The serving generation's keys."""

    @property
    def limiter(self) -> Limiter: ...

    @property
    def spend_counters(self) -> SpendCounters: ...

    def pools(self) -> dict[str, Pool]:
        """The self-hosted pools of the serving generation, by provider name."""
