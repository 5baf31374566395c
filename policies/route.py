"""The YAML model of a route: the model name clients send, its targets in order, and how it
retries, fails over, hedges, breaks its circuits and sheds what a target cannot carry."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from policies.schema_base import AnswerCache, Endpoint, Limits, PromptCache, Strict

ErrorClass = Literal[
    "rate_limited",
    "overloaded",
    "timeout",
    "connect_failed",
    "upstream_error",
    "auth_failed",
    "unsupported",
    "shed",
]
Strategy = Literal["priority", "weighted", "lowest_latency", "lowest_cost"]


class Price(Strict):
    """USD per million tokens, as `lowest_cost` sees a target."""

    input_per_mtok: float = Field(0.0, ge=0)
    """USD per million prompt tokens."""
    output_per_mtok: float = Field(0.0, ge=0)
    """USD per million completion tokens."""


class Target(Strict):
    provider: str
    """A name under `providers`."""
    model: str
    """The model name sent to that provider."""
    weight: float = Field(1.0, gt=0)
    """Share of traffic under the `weighted` strategy."""
    price: Price | None = None
    """A price for this model at this provider when the provider's `prices` has none: what
    accounting charges and `lowest_cost` orders by (litellm's map otherwise)."""


class RetryPolicy(Strict):
    """Upstream attempts per request, across targets. Moving to a fresh target is immediate;
    coming back to one already tried waits a jittered exponential backoff (at least its
    Retry-After). Retries are capped by a budget so an outage cannot multiply load."""

    max_attempts: int = Field(3, ge=1, le=10)
    """Upstream attempts per request, across targets."""
    retry_on: tuple[ErrorClass, ...] = (
        "rate_limited",
        "overloaded",
        "timeout",
        "connect_failed",
        "upstream_error",
        "auth_failed",
        "unsupported",
        "shed",
    )
    """Error classes after which the next attempt is made."""
    backoff_base_ms: int = Field(100, ge=0)
    """Backoff base when coming back to a target already tried (full jitter, exponential)."""
    backoff_cap_ms: int = Field(2_000, ge=0)
    """Backoff cap; a Retry-After above it is answered to the client (503) instead of waited out."""
    budget_ratio: float = Field(0.2, ge=0, le=1)
    """Retries ≤ this share of recent requests."""
    budget_min_retries: int = Field(10, ge=0)
    """… but always allow this many per window."""
    budget_window_s: float = Field(10.0, gt=0)
    """The window the retry budget counts requests over."""


class FailOverWhen(Strict):
    """When a target's circuit opens. Counts come from a sliding window per target."""

    window_s: float = Field(30.0, gt=0)
    """Sliding window of the counts below, per target."""
    min_requests: int = Field(10, ge=1)
    """Requests in the window before the rate rules apply (consecutive failures count always)."""
    error_rate: float | None = Field(0.5, gt=0, le=1)
    """Open the circuit at this share of failed requests."""
    consecutive_failures: int | None = Field(5, ge=1)
    """Open the circuit after this many failures in a row."""
    rate_limited_share: float | None = Field(None, gt=0, le=1)
    """Open the circuit when this share of requests is rate-limited."""
    p95_ttft_ms: int | None = Field(None, ge=1)
    """Open the circuit when the window's p95 time to first token is above this."""
    p95_latency_ms: int | None = Field(None, ge=1)
    """Open the circuit when the window's p95 latency is above this."""


class Breaker(Strict):
    """Envoy-style ejection: base times the number of ejections, capped; then half-open
    lets a few probes through."""

    base_ejection_s: float = Field(5.0, gt=0)
    """First ejection; each later one lasts this times the number of ejections."""
    max_ejection_s: float = Field(300.0, gt=0)
    """Longest ejection; a healthy target earns back one ejection per this long."""
    half_open_probes: int = Field(1, ge=1)
    """Requests let through while half-open; one success closes the circuit."""


class Hedge(Strict):
    """Start a second attempt on the next target when the first has produced nothing (no
    first token) by `delay_ms`, or by the first target's recent p95 when unset; the first to
    answer wins and the other is cancelled. A budget caps the duplicate requests."""

    delay_ms: int | None = Field(None, ge=1)
    """Start the hedge after this long without a first token (default: the target's p95)."""
    default_delay_ms: int = Field(1_000, ge=1)
    """Until the target has a p95."""
    budget_ratio: float = Field(0.05, gt=0, le=1)
    """Hedges ≤ this share of recent requests."""
    budget_min: int = Field(1, ge=0)
    """… but always allow this many per window."""
    budget_window_s: float = Field(60.0, gt=0)
    """The window the hedge budget counts requests over."""


class Route(Strict):
    targets: list[Target] = Field(min_length=1)
    """Where the route's requests go, in priority order for `priority`."""
    aliases: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=64
    )
    """Other model names that reach this route: exact names, or patterns with `*`
    (`claude-*`, `gpt-5*`) for clients that choose their own model names (coding agents).
    An exact name beats a pattern; the pattern with more literal characters beats the other."""
    endpoints: list[Endpoint] | None = None
    """Which endpoints this route serves; by default every endpoint its targets support."""
    strategy: Strategy = "priority"
    """How targets are ordered per request."""
    latency_budget_ms: int | None = Field(None, ge=1)
    """One deadline per request, end to end; `x-spillover-budget-ms` may tighten it."""
    ttft_budget_ms: int | None = Field(None, ge=1)
    """Streams: deadline to the first token."""
    typical_output_tokens: int = Field(256, ge=1)
    """Expected output when the request sets no max_tokens (feasibility estimates)."""
    retry: RetryPolicy = RetryPolicy()
    """Attempts, backoff and the retry budget."""
    fail_over_when: FailOverWhen = FailOverWhen()
    """When a target's circuit opens."""
    breaker: Breaker = Breaker()
    """How long an open circuit stays open."""
    hedge: Hedge | None = None
    """Hedged requests (off unless set)."""
    limits: Limits = Limits()
    """Limits on the route, across every key."""
    on_context_too_long: Target | None = None
    """Where a request goes when a target says its prompt is over the context window."""
    resume_streams: bool = False
    """Continue a stream that broke after output began on another target (see the routing docs)."""
    allow_cap_context: bool = False
    """A full self-hosted pool with `when_full: cap_context` may cap this route's max_tokens."""
    prompt_cache: PromptCache = PromptCache()
    """The shape stage and provider cache hints."""
    cache: AnswerCache = AnswerCache()
    """The response cache: repeated requests answered from a stored answer (off by default)."""
    untranslatable: Literal["reject", "drop"] = "reject"
    """What a translated target cannot carry and the request means something else without
    (an Anthropic document block, an input file, a client-run tool with no schema, a field
    this gateway does not know): `reject` skips such targets (a 400 naming the fields when
    no target is left); `drop` serves without them. Advisory fields (`thinking`,
    `context_management`, reasoning items, metadata, …) are always translated where the
    target has an equivalent and dropped otherwise; every drop is reported in
    `x-spillover-dropped`, a metric and the ledger row (see the routing docs' table)."""
    upstream_objects: list[
        Literal["conversation", "prompt", "file_search", "mcp", "mcp_servers", "container"]
    ] = Field(default_factory=list)
    """Native fields that reach objects or servers in the upstream account every tenant
    shares — Responses `conversation`, `prompt`, `file_search` and `mcp` tools; Messages
    `mcp_servers`, `container` — allowed on this route. Unlisted: refused with 400."""
    hosted_tools: Literal["drop", "reject"] = "drop"
    """Tools that only a provider runs (`web_search`, `code_interpreter`, Anthropic's
    `web_search_20250305`, …) on a target that cannot run them: `drop` serves without them
    (answering without search beats an outage) and reports it; `reject` skips such targets."""
