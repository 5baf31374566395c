"""Small pieces the attempt stage leans on: a log line throttle, the per-route budget for
extra attempts (retries, hedges), and attempt timeouts cut from the request's deadline."""

from __future__ import annotations

import time
from collections import deque

from gateway.providers.base import AttemptTimeouts
from policies import routing
from policies.route import Route
from policies.schema_base import Timeouts

_LOG_EVERY_S = 5.0


class LogThrottle:
    """One warning per (target, error class) per interval, with the count it stood for, so
    an outage is visible in the log without flooding it."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str, str], tuple[float, int]] = {}

    def allow(self, key: tuple[str, str, str]) -> int:
        """0 to stay quiet, else how many failures this line reports."""
        now = time.monotonic()
        last, suppressed = self._last.get(key, (0.0, 0))
        if now - last < _LOG_EVERY_S:
            self._last[key] = (last, suppressed + 1)
            return 0
        self._last[key] = (now, 0)
        return suppressed + 1


class RetryBudget:
    """Requests and extra attempts (retries, or hedges) per route over a short window in
    this process; an extra attempt is allowed while it stays within the route's share."""

    def __init__(self) -> None:
        self._events: dict[str, deque[tuple[float, bool]]] = {}

    def _window(self, route: str, now: float, span: float) -> deque[tuple[float, bool]]:
        events = self._events.setdefault(route, deque())
        while events and events[0][0] < now - span:
            events.popleft()
        return events

    def request(self, route: str, now: float, span: float) -> None:
        self._window(route, now, span).append((now, False))

    def try_spend(self, name: str, now: float, window_s: float, ratio: float, minimum: int) -> bool:
        events = self._window(name, now, window_s)
        extra = sum(1 for _, is_extra in events if is_extra)
        if not routing.within_budget(len(events) - extra, extra, ratio, minimum):
            return False
        events.append((now, True))
        return True

    def try_retry(self, route: Route, name: str, now: float) -> bool:
        policy = route.retry
        return self.try_spend(
            name, now, policy.budget_window_s, policy.budget_ratio, policy.budget_min_retries
        )


def timeouts_of(config: Timeouts) -> AttemptTimeouts:
    return AttemptTimeouts(
        connect=config.connect_ms / 1000,
        first_byte=config.first_byte_ms / 1000,
        idle=config.idle_ms / 1000,
        total=config.total_ms / 1000,
    )


def cut(
    base: AttemptTimeouts, remaining: float | None, ttft_budget: float | None
) -> AttemptTimeouts:
    if remaining is None and ttft_budget is None:
        return base
    left = remaining if remaining is not None else float("inf")
    first = min(base.first_byte, left, ttft_budget or float("inf"))
    return AttemptTimeouts(
        connect=min(base.connect, left),
        first_byte=first,
        idle=base.idle,
        total=min(base.total, left),
    )


def share_of(remaining: float | None, parts: int) -> float | None:
    return None if remaining is None else max(0.0, remaining) / parts
