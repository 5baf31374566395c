"""What the pool knows about each replica and about one request, as plain values: the inputs
of the admission and choice functions, which stay pure."""

from __future__ import annotations

from dataclasses import dataclass

from policies.pool import Priority


@dataclass(frozen=True, slots=True)
class ReplicaLoad:
    name: str
    # Gateway-side: what this process has in flight there (prompt + expected output tokens).
    outstanding_tokens: int
    outstanding_requests: int
    # Replica-side, from its last scrape; None when unknown or stale.
    kv_usage: float | None = None
    waiting: int | None = None
    running: int | None = None
    kv_capacity_tokens: int | None = None
    # Prompt tokens sent there since its last scrape (not yet in kv_usage), and tokens of
    # requests that finished since (still in kv_usage, but their blocks are free).
    unscraped_tokens: int = 0
    released_tokens: int = 0
    # Prompt tokens sent there whose request has not produced its first token yet.
    pending_prefill_tokens: int = 0

    @property
    def kv_estimate(self) -> float | None:
        """The scraped KV usage plus what was sent since, as a share of the cache."""
        if self.kv_usage is None:
            return None
        if not self.kv_capacity_tokens:
            return self.kv_usage
        change = (self.unscraped_tokens - self.released_tokens) / self.kv_capacity_tokens
        return min(1.0, max(0.0, self.kv_usage + change))

    @property
    def kv_room_tokens(self) -> int | None:
        estimate = self.kv_estimate
        if estimate is None or not self.kv_capacity_tokens:
            return None
        return int((1.0 - estimate) * self.kv_capacity_tokens)


@dataclass(frozen=True, slots=True)
class PoolRequest:
    prompt_tokens: int
    output_tokens: int
    prefix: tuple[int, ...] = ()
    priority: Priority = "standard"

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens
