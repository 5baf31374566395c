"""One vLLM replica: its lifecycle, what the gateway has in flight there, its last scrape, and
the probes that move it between states.

    starting ──/health 200 + model listed──▶ warming ──warm-up answered──▶ ready
        ▲                                       │ fails                     │ health fails N x
        │                                       ▼                           ▼  (a connect timeout
        └──────────────────────────────────── unhealthy ◀─────────────────┘  counts as one) or
                                                                              a request refused
    draining: out of discovery (or the pool closing); takes no new request, then removed;
              it never goes back (a listed-again replica starts afresh).

A replica that leaves rotation comes back only through warming.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Literal, Protocol

from fallback_engine.load import ReplicaLoad
from fallback_engine.scrape import Rates, Snapshot, rates

State = Literal["starting", "warming", "ready", "draining", "unhealthy"]


@dataclass(frozen=True, slots=True)
class Hold:
    """The KV one in-flight request is promised at a replica: `tokens` in all, of which the
    prompt's leading blocks (`prefix`, hashed) may be shared with other requests there."""

    tokens: int
    prefix: tuple[int, ...]
    block_tokens: int

    @property
    def private_tokens(self) -> int:
        return max(0, self.tokens - len(self.prefix) * self.block_tokens)


class Replica:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.state: State = "starting"
        self.since = time.monotonic()
        self.health_failures = 0
        self.outstanding_tokens = 0
        self.outstanding_requests = 0
        self.pending_prefill_tokens = 0
        # Prompt tokens of requests sent since the last scrape and still running there.
        self.unscraped_tokens = 0
        # Tokens of requests seen by the last scrape that have finished since.
        self.released_tokens = 0
        self.committed_tokens = 0
        self._held_blocks: Counter[int] = Counter()
        self.scrapes = 0
        self.snapshot: Snapshot | None = None
        self.rates = Rates()
        self.last_error = ""
        # The longest sequence it serves, as its /v1/models card says (vLLM's max_model_len).
        self.max_model_len: int | None = None

    def __repr__(self) -> str:
        return f"Replica({self.url}, {self.state})"

    def load(self, now: float, stale_after_s: float) -> ReplicaLoad:
        snap = self.snapshot
        fresh = snap is not None and now - snap.at <= stale_after_s
        return ReplicaLoad(
            name=self.url,
            outstanding_tokens=self.outstanding_tokens,
            outstanding_requests=self.outstanding_requests,
            kv_usage=snap.kv_usage if fresh and snap else None,
            waiting=int(snap.waiting) if fresh and snap else None,
            running=int(snap.running) if fresh and snap else None,
            kv_capacity_tokens=snap.kv_capacity_tokens if snap else None,
            unscraped_tokens=self.unscraped_tokens if fresh else 0,
            released_tokens=self.released_tokens if fresh else 0,
            pending_prefill_tokens=self.pending_prefill_tokens,
            committed_tokens=self.committed_tokens,
            max_model_len=self.max_model_len,
        )

    # -- the counters change here only --------------------------------------------------------

    def move_to(self, state: State) -> bool:
        """Enter `state`; False when already there, or when draining: a replica that left
        discovery is only ever removed (a health check that was under way when it left must
        not bring it back)."""
        if self.state == state or self.state == "draining":
            return False
        self.state = state
        self.since = time.monotonic()
        return True

    def take_over(self, previous: Replica) -> None:
        """A reload's new pool keeps what the old one knew of this replica."""
        self.state = previous.state
        self.snapshot, self.rates = previous.snapshot, previous.rates
        self.max_model_len = previous.max_model_len

    def checked(self, healthy: bool) -> int:
        """One health check's result; the consecutive failures so far."""
        self.health_failures = 0 if healthy else self.health_failures + 1
        return self.health_failures

    def failed_passively(self, why: str, counts: bool) -> int:
        """A request could not reach this replica; a timeout `counts` as a failed check."""
        self.last_error = why
        if counts:
            self.health_failures += 1
        return self.health_failures

    def sent(self, tokens: int, prompt_tokens: int, hold: Hold) -> None:
        """A request sent here: tokens in flight, a prompt to prefill, its KV promised."""
        self.outstanding_tokens += tokens
        self.outstanding_requests += 1
        self.pending_prefill_tokens += prompt_tokens
        self.unscraped_tokens += prompt_tokens
        self.hold(hold)

    def prefilled(self, prompt_tokens: int) -> None:
        """A request's first token came back: its prompt is no longer ahead in the queue."""
        self.pending_prefill_tokens -= prompt_tokens

    def finished(self, tokens: int, prompt_tokens: int, scrape: int, hold: Hold | None) -> None:
        """A request sent at scrape count `scrape` is done; its KV is free."""
        self.outstanding_tokens -= tokens
        self.outstanding_requests -= 1
        if hold is not None:
            self.unhold(hold)
        if self.scrapes == scrape:  # not yet in a scrape: its blocks are free now
            self.unscraped_tokens = max(0, self.unscraped_tokens - prompt_tokens)
        else:  # the last scrape counted its blocks, which are free now
            self.released_tokens += tokens

    def hold(self, hold: Hold) -> None:
        """Commit a request's peak KV here; a prompt block already held costs nothing."""
        self.committed_tokens += hold.private_tokens
        for block in hold.prefix:
            self._held_blocks[block] += 1
            if self._held_blocks[block] == 1:
                self.committed_tokens += hold.block_tokens

    def unhold(self, hold: Hold) -> None:
        self.committed_tokens -= hold.private_tokens
        for block in hold.prefix:
            self._held_blocks[block] -= 1
            if self._held_blocks[block] == 0:
                del self._held_blocks[block]
                self.committed_tokens -= hold.block_tokens

    def observe(self, snapshot: Snapshot) -> None:
        if self.snapshot is not None:
            self.rates = rates(self.snapshot, snapshot)
        self.snapshot = snapshot
        self.unscraped_tokens = 0
        self.released_tokens = 0
        self.scrapes += 1


class ReplicaProbe(Protocol):
    """What the lifecycle and scrape loops ask of a replica (`fallback_engine.prober.Prober`
    over HTTP; a fake in the component tests)."""

    async def healthy(self, replica: Replica) -> bool: ...

    async def warm_up(self, replica: Replica) -> bool: ...

    async def scrape(self, replica: Replica) -> Snapshot | None: ...
