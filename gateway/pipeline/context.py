"""The request record that flows through the stages, and the small typed objects it holds."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from gateway.accounting.row import LedgerRow
from gateway.attempt_record import AttemptRecord
from gateway.keys import Principal
from gateway.pipeline.ingress.exchange import Exchange
from gateway.pipeline.tokens import prompt_tokens as estimate_prompt_tokens
from gateway.providers.base import CacheHint, NativeRequest, Usage
from gateway.providers.translate.chat_form import Omission
from gateway.state.limits import Check
from gateway.state.spend import Bucket
from policies.pool import Priority
from policies.route import Route, Target
from policies.routing import Skip
from policies.schema import WireProtocol
from policies.schema_base import Endpoint

# What the gateway answers itself, admitted and kept in the ledger like the rest.
LocalEndpoint = Literal["count_tokens", "stored_response", "models"]
_LOCAL_ENDPOINTS = frozenset(get_args(LocalEndpoint))


@dataclass(slots=True)
class HeldLimits:
    """What the admit stage took from the limits: tokens to settle, in-flight slots to give back."""

    token_checks: list[Check] = field(default_factory=list)
    slots: list[tuple[str, int]] = field(default_factory=list)


@dataclass(slots=True)
class Reservation:
    """Money reserved in the budgets' buckets, to become the real cost at the end."""

    buckets: list[Bucket]
    amount: int
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Asked:
    """What the client asked, read once by its protocol (`ingress/`) and never changed: the
    request in the OpenAI chat form every stage reads, and what only the client's own
    protocol carries."""

    body: dict[str, Any]  # the chat form, as the client's protocol read it (before shaping)
    stream: bool = False
    client_wants_usage: bool = False
    # The client's own body for targets that speak its protocol.
    native: NativeRequest | None = None
    # What the chat form could not carry ("top_k", "messages[0].content[1] (document)").
    untranslatable: tuple[Omission, ...] = ()
    reasoning_effort: str | None = None  # the client's thinking, for a target that reasons
    exchange: Exchange | None = None  # a Responses request's conversation, kept by the gateway


# Before the ingress has read the body, or when it could not: nothing asked yet.
NOTHING_ASKED = Asked(body={})


@dataclass(slots=True)
class Outcome:
    """What happened to the request, written by the stages as it happens; its ledger row is
    made from it once, and the metrics, the access line, the span and the headers of a
    whole answer are read from that row."""

    attempts: list[AttemptRecord] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    served_by: Target | None = None
    usage: Usage | None = None
    status: int = 0  # the status the client was sent; 0 while nothing was
    error_class: str | None = None
    ttft_s: float | None = None
    bytes_sent: bool = False
    client_disconnected: bool = False
    usage_estimated: bool = False  # a cut stream's tokens, counted by the gateway
    resumed: bool = False  # a broken stream was continued on another target
    resumed_by: Target | None = None  # … by this one (`served_by` began the answer)
    # Each upstream's share of a resumed answer, billed at its own price.
    segments: list[tuple[Target, Usage]] = field(default_factory=list)
    finish_reasons: list[str] | None = None  # read only while tracing (providers/finish.py)
    dropped: list[str] = field(default_factory=list)  # served without (a translated target)
    faults: list[str] = field(default_factory=list)  # a drill injected into this request
    cache: str | None = None  # the response cache: hit, miss, bypass, refresh (None: off)
    cache_saved: int = 0  # micro-dollars a hit saved: what the stored answer cost

    @property
    def dropped_text(self) -> str | None:
        """What was dropped, as the row and `x-spillover-dropped` say it (bounded)."""
        return ", ".join(self.dropped)[:1024] or None

    @property
    def fell_back(self) -> bool:
        """Served by a later target because an earlier one failed, was cooling down or had
        its circuit open (a target that cannot serve the endpoint at all does not count)."""
        return self.served_by is not None and (
            self.resumed_by is not None
            or any(
                a.outcome in ("failed", "skipped") and a.error_class != "unsupported"
                for a in self.attempts
            )
        )


@dataclass(slots=True)
class RequestContext:
    """One request on its way through the stages: who sent it, what it asked (`asked`,
    frozen once its protocol read it), what the stages decided and hold for it, and what
    happened (`outcome`) — and, once kept, its ledger row."""

    request_id: str  # ours, unique
    endpoint: Endpoint | LocalEndpoint
    ingress: WireProtocol = "openai"  # the client's protocol
    client_request_id: str | None = None  # the client's own, kept beside ours
    trace_id: str | None = None  # the request's trace, when tracing is on
    traced: bool = False  # its span records (sampled): worth reading what only a span shows
    started: float = field(default_factory=time.perf_counter)
    wall_started: float = field(default_factory=time.time)
    asked: Asked = NOTHING_ASKED
    # Decided on the way in (prepare).
    principal: Principal | None = None
    route_name: str = ""
    route: Route | None = None
    body: dict[str, Any] = field(default_factory=dict)  # what is sent: `asked.body`, shaped
    deadline: float | None = None  # perf_counter() value; None: no latency budget
    priority: Priority = "standard"  # for the self-hosted pool's shedding
    cache_hint: CacheHint | None = None  # from the shape stage, for the provider's cache
    drill: str | None = None  # x-spillover-drill: faults scoped to it apply
    prompt_estimate: int | None = None  # counted once, for limits and budgets alike
    # Held, to give back when the request ends whatever its outcome.
    held_limits: HeldLimits | None = None
    reservation: Reservation | None = None  # money to settle
    releases: list[Callable[[], None]] = field(default_factory=list)  # a loaded history's bytes
    outcome: Outcome = field(default_factory=Outcome)
    row: LedgerRow | None = None  # its ledger row, once kept (before the answer's last part)
    finished: bool = False  # limits released, money settled, span ended
    handed_off: bool = False  # served whole by the heavy lane, which keeps its row

    def take(self, asked: Asked) -> None:
        """What the client's protocol read: the body sent starts as the one asked."""
        self.asked = asked
        self.body = asked.body

    @property
    def route_label(self) -> str | None:
        """The route's name once one was found (a name the client made up is none)."""
        return self.route_name if self.route is not None else None

    @property
    def upstream_endpoint(self) -> Endpoint:
        """The endpoint an upstream is called for; a local answer never calls one."""
        if self.endpoint in _LOCAL_ENDPOINTS:
            raise AssertionError(f"{self.endpoint} is answered by the gateway itself")
        return self.endpoint  # type: ignore[return-value]

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def prompt_tokens(self, model: str) -> int:
        """The prompt's token estimate (tokenising is the costly part: done once)."""
        if self.prompt_estimate is None:
            self.prompt_estimate = estimate_prompt_tokens(self.body, model)
        return self.prompt_estimate

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.perf_counter()
