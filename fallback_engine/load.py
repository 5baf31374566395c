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
    # The KV this gateway's in-flight requests there will hold at their peak: prompt plus
    # expected output, each prompt block that several of them share counted once.
    committed_tokens: int = 0
    # Its context window (from /v1/models): a longer prompt is refused there, so never sent.
    max_model_len: int | None = None

    @property
    def kv_estimate(self) -> float | None:
        """The share of the cache in use or already promised: the scraped usage plus what
        was sent since, and never less than what this gateway has committed there (a scrape
        sees the prompts, not the output they are about to grow by). Stale metrics leave
        only the committed share."""
        capacity = self.kv_capacity_tokens
        if not capacity:
            return self.kv_usage
        committed = self.committed_tokens / capacity
        if self.kv_usage is None:
            return min(1.0, committed)
        change = (self.unscraped_tokens - self.released_tokens) / capacity
        return min(1.0, max(0.0, self.kv_usage + change, committed))

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
