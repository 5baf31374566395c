"""What happened lately, for the console's overview: breakers that opened or closed, faults
injected, drills run, config reloads. Bounded; this process's view only."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

from policies.route import Target

Kind = Literal["breaker", "fault", "drill", "reload"]


@dataclass(frozen=True, slots=True)
class Incident:
    at: float  # epoch seconds
    kind: Kind
    text: str
    bad: bool  # shown as a problem (an open breaker, a failed drill, a rejected reload)


class Incidents:
    def __init__(self, keep: int = 200) -> None:
        self._items: deque[Incident] = deque(maxlen=keep)

    def add(self, kind: Kind, text: str, bad: bool = False) -> None:
        self._items.append(Incident(time.time(), kind, text, bad))

    def breaker_changed(self, target: Target, phase: str, reason: str) -> None:
        why = f" ({reason})" if reason and phase == "open" else ""
        self.add(
            "breaker",
            f"circuit of {target.provider}/{target.model} {phase.replace('_', '-')}{why}",
            bad=phase == "open",
        )

    def reloaded(self, ok: bool, trigger: str, errors: list[str]) -> None:
        if ok:
            self.add("reload", f"config reloaded ({trigger})")
            return
        first = errors[0] if errors else "?"
        self.add(
            "reload",
            f"reload rejected ({trigger}), still serving the last good config: {first}",
            bad=True,
        )

    def recent(self, count: int = 20) -> list[Incident]:
        return list(self._items)[-count:][::-1]
