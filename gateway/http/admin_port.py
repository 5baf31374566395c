"""What the admin API may see and do of the running gateway: a narrow port, so the admin
routes never reach into the gateway's internals (its generations, proxy, accountant)."""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from gateway.accounting.pricing import PriceTable
from gateway.drill.faults import FaultTable
from gateway.http.console.incidents import Incidents
from gateway.http.reload import ReloadResult
from gateway.keyring.manage import KeyringAdmin
from gateway.keys import Principal
from gateway.state.answers import AnswerStore
from gateway.state.contracts import RoutingState
from policies.schema import GatewayConfig


class AdminPort(Protocol):
    faults: FaultTable
    state: RoutingState
    incidents: Incidents
    lane: str  # "heavy" in the heavy lane's process, else ""

    @property
    def registry(self) -> CollectorRegistry: ...

    async def exposition(self) -> bytes:
        """`/metrics`: this process's series, and the heavy lane's."""

    def config(self) -> GatewayConfig:
        """The config being served now."""

    def shares_state(self) -> bool:
        """Whether routing state, limits and budgets live in Redis (set at start)."""

    def authenticate(self, authorization: bytes | None) -> Principal: ...

    def problems(self) -> tuple[dict[str, int], list[str]]:
        """Usable targets per route, and why this replica should not get traffic (if so)."""

    def notices(self) -> list[str]:
        """What an operator should know that is no reason to take this replica out."""

    @property
    def keyring(self) -> KeyringAdmin:
        """Stored keys and teams: issue, change, rotate, revoke."""

    @property
    def keyring_enabled(self) -> bool: ...

    @property
    def answers(self) -> AnswerStore:
        """The response cache's store."""

    def cache_state(self) -> dict[str, Any]:
        """The response cache's backend, size and per-route results and savings."""

    def prices(self) -> PriceTable: ...

    async def reload(self, trigger: str) -> ReloadResult: ...
