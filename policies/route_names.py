"""Which route a client's model name reaches: the route's own name, one of its exact aliases, or
one of its patterns (`claude-*`, `gpt-5*`). Agents choose model names themselves, so a route
can stand behind many. Resolved once per config generation and remembered per name (bounded:
names are the client's), most specific first: an exact name beats any pattern, and among
patterns the one with more literal characters wins (ties: the one written first)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_REMEMBERED = 4096  # distinct client model names remembered per generation


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str
    route: str
    literal: int  # how many characters are not `*`: the more, the more specific
    regex: re.Pattern[str]


def is_pattern(name: str) -> bool:
    return "*" in name


def compile_pattern(text: str, route: str) -> Pattern:
    parts = (re.escape(part) for part in text.split("*"))
    return Pattern(text, route, len(text.replace("*", "")), re.compile(".*".join(parts)))


class RouteNames:
    """Client model name → route name."""

    def __init__(self, aliases: Mapping[str, Iterable[str]]) -> None:
        """`aliases`: each route's name and its aliases (exact names and patterns)."""
        self._exact: dict[str, str] = {}
        patterns: list[Pattern] = []
        for route, names in aliases.items():
            self._exact[route] = route
            for name in names:
                if is_pattern(name):
                    patterns.append(compile_pattern(name, route))
                else:
                    self._exact.setdefault(name, route)
        # Stable sort: equal specificity keeps the order the config wrote them in.
        self.patterns = sorted(patterns, key=lambda p: -p.literal)
        self._seen: dict[str, str | None] = {}

    def resolve(self, name: str) -> str | None:
        found = self._exact.get(name)
        if found is not None:
            return found
        if name in self._seen:
            return self._seen[name]
        match = next((p.route for p in self.patterns if p.regex.fullmatch(name)), None)
        if len(self._seen) < MAX_REMEMBERED:
            self._seen[name] = match
        return match

    def table(self) -> list[tuple[str, str]]:
        """(name or pattern, route), in the order a name is matched: for `check-config`."""
        exact = sorted((name, route) for name, route in self._exact.items() if name != route)
        return exact + [(p.text, p.route) for p in self.patterns]
