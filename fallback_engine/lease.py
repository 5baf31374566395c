"""A request's place at a replica (or at the pool's router), released exactly once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fallback_engine.replica import Hold, Replica


@dataclass(eq=False)
class Lease:
    base_url: str
    replica: Replica | None
    tokens: int
    max_tokens: int | None = None  # set when the pool capped the request's output
    _release: Callable[[Lease], None] | None = None
    prompt_tokens: int = 0
    scrape: int = 0  # the replica's scrape count when the request was sent
    prefilling: bool = True  # no token back yet
    hold: Hold | None = None  # the KV promised at the replica, given back on release

    def first_token(self) -> None:
        """The replica answered with its first token: this prompt's prefill is done."""
        if self.prefilling:
            self.prefilling = False
            if self.replica is not None:
                self.replica.prefilled(self.prompt_tokens)

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release(self)

    def returned(self) -> None:
        """Give the replica back what this lease took (called once, by the pool)."""
        self.first_token()
        if self.replica is not None:
            self.replica.finished(self.tokens, self.prompt_tokens, self.scrape, self.hold)
