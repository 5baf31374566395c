"""The per-route budget for extra attempts (retries, or hedges): requests and extra attempts
over a short window in this process, so an outage cannot multiply the load it meets."""

from __future__ import annotations

from collections import deque

from policies import routing
from policies.route import Route


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
