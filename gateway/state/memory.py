"""Routing state for one process. The Redis backend keeps one of these as its local copy
and its fallback, so both speak exactly the same decisions (`policies.routing`)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from gateway.state.windows import AttemptSample, TargetWindow
from policies import routing
from policies.route import Breaker, FailOverWhen
from policies.routing import BreakerState, BreakerVerdict, TargetView

_CLOSED = BreakerState()


class MemoryState:
    backend = "memory"

    def __init__(self) -> None:
        self.windows: dict[str, TargetWindow] = {}
        self.breakers: dict[str, BreakerState] = {}
        self.cooldowns: dict[str, float] = {}
        self.headroom: dict[str, float] = {}

    def window(self, key: str) -> TargetWindow:
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = TargetWindow()
        return window

    def local_window(self, key: str) -> TargetWindow:
        return self.window(key)

    async def views(self, keys: list[str], now: float, window_s: float) -> dict[str, TargetView]:
        return self.local_views(keys, now, window_s)

    def local_views(self, keys: list[str], now: float, window_s: float) -> dict[str, TargetView]:
        out: dict[str, TargetView] = {}
        for key in keys:
            window = self.windows.get(key)
            out[key] = TargetView(
                breaker=self.breakers.get(key, BreakerState()),
                stats=window.estimates() if window else routing.WindowStats(),
                cooldown_until=self.cooldowns.get(key, 0.0),
                headroom_until=self.headroom.get(key, 0.0),
            )
        return out

    async def admit(self, key: str, now: float, config: Breaker) -> BreakerVerdict:
        decision, state = routing.admit(self.breakers.get(key, BreakerState()), now, config)
        self.breakers[key] = state
        return decision

    async def record(
        self, key: str, outcome: AttemptSample, now: float, rules: FailOverWhen, config: Breaker
    ) -> BreakerState:
        window = self.window(key)
        window.add(outcome, now)
        if outcome.ok:
            state = self.breakers.get(key)
            if state is None or (state.phase == "closed" and not state.ejections):
                return state or _CLOSED  # the common case: nothing to decide
            return self.apply(key, outcome, window.estimates(), now, rules, config)
        return self.apply(key, outcome, window.stats(now, rules.window_s), now, rules, config)

    def apply(
        self,
        key: str,
        outcome: AttemptSample,
        stats: routing.WindowStats,
        now: float,
        rules: FailOverWhen,
        config: Breaker,
    ) -> BreakerState:
        state = self.breakers.get(key, BreakerState())
        if outcome.ok:
            state = routing.on_success(state, now, config)
        elif outcome.counts:
            state = routing.on_failure(state, stats, now, rules, config)
        self.breakers[key] = state
        return state

    async def cool_down(self, key: str, until: float) -> None:
        self.cooldowns[key] = max(until, self.cooldowns.get(key, 0.0))

    async def limit_headroom(self, key: str, until: float) -> None:
        self.headroom[key] = max(until, self.headroom.get(key, 0.0))

    async def reset(self, key: str | None = None) -> None:
        """Forget what was observed of one target or of all: breakers close, cool-downs end."""
        for table in (self.windows, self.breakers, self.cooldowns, self.headroom):
            if key is None:
                table.clear()
            else:
                table.pop(key, None)

    async def close(self) -> None:
        return None

    def window_stats(self, key: str, now: float, window_s: float) -> routing.WindowStats:
        window = self.windows.get(key)
        return window.stats(now, window_s) if window else routing.WindowStats()

    def describe(self, now: float, window_s: float) -> dict[str, Any]:
        keys = sorted(set(self.windows) | set(self.breakers) | set(self.cooldowns))
        return {
            key: {
                "breaker": asdict(view.breaker),
                "window": asdict(self.window_stats(key, now, window_s)),
                "cooldown_remaining_s": max(0.0, view.cooldown_until - now),
                "headroom_blocked_s": max(0.0, view.headroom_until - now),
            }
            for key, view in self.local_views(keys, now, window_s).items()
        }
