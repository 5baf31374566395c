"""What the request path asks of shared state, whichever backend serves it: `memory` for one
process, `redis` for many (through `shared.SharedRedis`, with local fallbacks)."""

from __future__ import annotations

from typing import Any, Protocol

from gateway.state.limits import Check
from gateway.state.spend import Bucket
from gateway.state.windows import AttemptSample, TargetWindow
from policies import routing
from policies.limits import Verdict
from policies.route import Breaker, FailOverWhen
from policies.routing import BreakerState, BreakerVerdict, TargetView


class RoutingState(Protocol):
    """Windows, breakers, cool-downs and provider headroom per target."""

    backend: str

    async def views(
        self, keys: list[str], now: float, window_s: float
    ) -> dict[str, TargetView]: ...

    async def admit(self, key: str, now: float, config: Breaker) -> BreakerVerdict: ...

    async def record(
        self, key: str, outcome: AttemptSample, now: float, rules: FailOverWhen, config: Breaker
    ) -> BreakerState: ...

    async def cool_down(self, key: str, until: float) -> None: ...

    async def limit_headroom(self, key: str, until: float) -> None: ...

    def local_window(self, key: str) -> TargetWindow:
        """This process's own window for `key` (what it alone has seen)."""

    def window_stats(self, key: str, now: float, window_s: float) -> routing.WindowStats: ...

    def describe(self, now: float, window_s: float) -> dict[str, Any]: ...

    async def reset(self, key: str | None = None) -> None:
        """Forget what was observed of one target (`key`) or of all: breakers close,
        cool-downs end."""

    async def close(self) -> None: ...


class Limiter(Protocol):
    """rpm/tpm (GCRA) and concurrency counters, checked all-or-nothing."""

    async def start(self) -> None: ...

    async def acquire(self, checks: list[Check]) -> list[Verdict]: ...

    async def settle(self, check: Check, actual: int) -> None: ...

    async def enter(self, slots: list[tuple[str, int]]) -> str | None: ...

    async def leave(self, slots: list[tuple[str, int]]) -> None: ...

    async def peek(self, names: list[str]) -> list[float]:
        """Read-only (the console): a rate's theoretical arrival time (epoch seconds, 0 when
        unused) or a concurrency counter's requests in flight, per name."""

    async def close(self) -> None: ...


class SpendCounters(Protocol):
    async def reserve(self, buckets: list[Bucket], amount: int) -> list[bool]:
        """Which buckets are already full; nothing is reserved when a hard one is."""

    async def settle(self, buckets: list[Bucket], amount: int, actual: int) -> list[int]:
        """Turn a reservation into what was spent; the buckets' totals after it."""

    async def peek(self, names: list[str]) -> list[tuple[int, int]]:
        """Read-only (the console): (spent, reserved) micro-dollars per bucket name."""

    async def close(self) -> None: ...
