"""What the admin API and the console see of the running gateway (`AdminPort`, `ConsolePort`):
read through to the generation being served, so a reload shows at once."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import CollectorRegistry

from fallback_engine.pool import Pool
from gateway.accounting.pricing import PriceTable
from gateway.assembly import Core, Generation
from gateway.drill.faults import FaultTable
from gateway.http.console.incidents import Incidents
from gateway.http.console.sampler import Sampler
from gateway.http.heavy_lane import HeavyLane
from gateway.http.lane_metrics import exposition
from gateway.http.reload import ReloadResult
from gateway.keyring.manage import KeyringAdmin
from gateway.keys import KeyStore, Principal
from gateway.metrics import GatewayMetrics
from gateway.state.answers import AnswerStore
from gateway.state.contracts import Limiter, RoutingState, SpendCounters
from policies.schema import GatewayConfig

_CACHE_SERIES = ("spillover_response_cache_requests", "spillover_response_cache_saved_usd")


class GatewayView:
    def __init__(
        self,
        core: Core,
        current: Callable[[], Generation],
        draining: Callable[[], bool],
        reload: Callable[[str], Coroutine[Any, Any, ReloadResult]],
        incidents: Incidents,
        sampler: Sampler | None,
        config_path: str,
        lane: str,
        heavy_lane: HeavyLane | None,
    ) -> None:
        self._core = core
        self._current = current
        self._draining = draining
        self._reload = reload
        self.faults: FaultTable = core.faults
        self.state: RoutingState = core.backends.routing
        self.metrics: GatewayMetrics = core.metrics
        self.incidents = incidents
        self.sampler = sampler
        self.config_path = config_path
        self.lane = lane  # "heavy" in the heavy lane's process, else ""
        self._heavy_lane = heavy_lane
        self._keyring_admin: KeyringAdmin | None = None

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def config(self) -> GatewayConfig:
        return self._current().config

    async def exposition(self) -> bytes:
        lane = self._heavy_lane
        return exposition(self.registry, await lane.scrape() if lane is not None else None)

    def shares_state(self) -> bool:
        return self._core.backends.shared is not None

    def authenticate(self, authorization: bytes | None) -> Principal:
        return self.keys().authenticate(authorization)

    def problems(self) -> tuple[dict[str, int], list[str]]:
        usable = self._current().usable_targets()
        problems = [f"route {name} has no usable target" for name, n in usable.items() if not n]
        if self._draining():
            problems.append("shutting down")
        if not self._core.accountant.accepting():
            problems.append("the ledger can keep no more rows")
        return usable, problems

    def notices(self) -> list[str]:
        """What an operator should know that is no reason to take this replica out."""
        keyring = self._core.keyring
        stale = keyring.stale_s()
        if not stale:
            return []
        return [
            f"keyring: the database has not answered for {stale:.0f} s; serving the keys "
            f"loaded last (version {keyring.snapshot.version})"
        ]

    @property
    def keyring(self) -> KeyringAdmin:
        if self._keyring_admin is None:
            self._keyring_admin = KeyringAdmin(self._core.keyring, self.config)
        return self._keyring_admin

    @property
    def keyring_enabled(self) -> bool:
        return self._core.keyring.enabled

    def prices(self) -> PriceTable:
        return self._core.accountant.prices

    async def reload(self, trigger: str) -> ReloadResult:
        return await self._reload(trigger)

    # -- and what the console may, besides -----------------------------------------------------

    @property
    def limiter(self) -> Limiter:
        return self._core.backends.limiter

    @property
    def spend_counters(self) -> SpendCounters:
        return self._core.backends.spend

    def keys(self) -> KeyStore:
        return self._current().pipeline.keys

    @property
    def answers(self) -> AnswerStore:
        """The response cache's store (outlives every generation)."""
        return self._core.answers

    def cache_state(self) -> dict[str, Any]:
        """The response cache: where it lives, what it holds (this process, for memory), and
        per route the requests by result and the dollars saved since this process started."""
        entries, held = self.answers.held()
        routes: dict[str, dict[str, float]] = {}
        for family in self.registry.collect():
            if family.name not in _CACHE_SERIES:
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    entry = routes.setdefault(sample.labels["route"], {})
                    name = sample.labels.get("result", "saved_usd")
                    entry[name] = entry.get(name, 0.0) + sample.value
        for entry in routes.values():
            asked = entry.get("hit", 0.0) + entry.get("miss", 0.0)
            entry["hit_ratio"] = entry.get("hit", 0.0) / asked if asked else 0.0
        return {
            "backend": self.answers.backend,
            "entries": entries if entries >= 0 else None,
            "bytes": held if held >= 0 else None,
            "routes": routes,
        }

    def pools(self) -> dict[str, Pool]:
        return self._current().pools()
