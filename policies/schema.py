"""The YAML model. Every model forbids unknown keys so a typo is an error, not a default."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator

from policies.pool import Priority, VllmPoolProvider
from policies.schema_base import PriceOverride, PromptCache, Strict, Timeouts

Endpoint = Literal["chat", "completions", "embeddings"]


class Limits(Strict):
    """Gateway-side limits. rpm and tpm are GCRA rates (any 60 s window admits at most the
    limit plus its burst); concurrent caps requests in flight."""

    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    concurrent: int | None = Field(None, ge=1)
    # Requests (or tokens) allowed at once; any 60 s window admits at most limit * (1 + share).
    burst_share: float = Field(0.01, ge=0, le=1)


class Budget(Strict):
    """Spend limits in USD per calendar day and month (in `GatewayConfig.timezone`). `hard`
    refuses requests once spent; `soft` only warns (metric, log, response header)."""

    daily_usd: float | None = Field(None, gt=0)
    monthly_usd: float | None = Field(None, gt=0)
    mode: Literal["hard", "soft"] = "hard"


class TeamConfig(Strict):
    limits: Limits = Limits()
    budget: Budget = Budget()


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(4000, ge=1, le=65535)
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    # Objects and arrays nested deeper than this are refused at the edge (400): the stages
    # and encoders after it recurse, and no real request nests this deep. Below 250, the
    # JSON encoder's own limit.
    max_json_depth: int = Field(64, ge=4, le=200)
    # A request's head (request line and headers) larger than this is answered 431.
    max_header_bytes: int = Field(64 * 1024, ge=4096, le=1024 * 1024)
    workers: int = Field(1, ge=1, le=64)
    access_log: bool = False
    # An idle client connection stays open this long. Above a load balancer's idle timeout
    # (60 s on AWS ALB and GCP), so the balancer, not the gateway, closes idle connections:
    # a gateway closing first races the balancer's next request on that connection (a 502).
    keep_alive_s: float = Field(75.0, gt=0)
    # On SIGTERM, /health/ready answers 503 for this long while requests are still served,
    # so load balancers take the replica out before it stops accepting.
    drain_s: float = Field(5.0, ge=0, le=300)
    # Then stop accepting, and give in-flight requests and streams this long to finish.
    graceful_shutdown_s: float = Field(30.0, ge=0)
    # How often to look for a changed config file (0: only SIGHUP and POST /admin/reload).
    reload_poll_s: float = Field(2.0, ge=0)


class _ProviderBase(Strict):
    api_base: str | None = None
    api_key: SecretStr | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    max_connections: int = Field(512, ge=1)
    # Prices per upstream model, over litellm's map (e.g. negotiated or self-hosted).
    prices: dict[str, PriceOverride] = Field(default_factory=dict)


class OpenAIProvider(_ProviderBase):
    """Any upstream that speaks the OpenAI wire format (OpenAI, vLLM, Groq, Together, …)."""

    kind: Literal["openai"]
    api_base: str = "https://api.openai.com/v1"


class AnthropicProvider(_ProviderBase):
    kind: Literal["anthropic"]
    api_base: str = "https://api.anthropic.com"
    anthropic_version: str = "2023-06-01"
    # Anthropic requires max_tokens; used when the OpenAI request carries none.
    default_max_tokens: int = Field(4096, ge=1)


class LiteLLMProvider(_ProviderBase):
    """The long tail (Bedrock, Vertex, Gemini, Cohere, …) through litellm, loaded lazily."""

    kind: Literal["litellm"]
    # Extra keyword arguments handed to litellm as they are (aws_region_name, vertex_project, …).
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)


ProviderConfig = Annotated[
    OpenAIProvider | AnthropicProvider | LiteLLMProvider | VllmPoolProvider,
    Field(discriminator="kind"),
]


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
    """USD per million tokens; used by `lowest_cost` (the cost issue adds litellm's map)."""

    input_per_mtok: float = Field(0.0, ge=0)
    output_per_mtok: float = Field(0.0, ge=0)


class Target(Strict):
    provider: str
    model: str
    weight: float = Field(1.0, gt=0)
    price: Price | None = None


class RetryPolicy(Strict):
    """Upstream attempts per request, across targets. Moving to a fresh target is immediate;
    coming back to one already tried waits a jittered exponential backoff (at least its
    Retry-After). Retries are capped by a budget so an outage cannot multiply load."""

    max_attempts: int = Field(3, ge=1, le=10)
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
    backoff_base_ms: int = Field(100, ge=0)
    backoff_cap_ms: int = Field(2_000, ge=0)
    budget_ratio: float = Field(0.2, ge=0, le=1)  # retries ≤ this share of recent requests
    budget_min_retries: int = Field(10, ge=0)  # … but always allow this many per window
    budget_window_s: float = Field(10.0, gt=0)


class FailOverWhen(Strict):
    """When a target's circuit opens. Counts come from a sliding window per target."""

    window_s: float = Field(30.0, gt=0)
    min_requests: int = Field(10, ge=1)
    error_rate: float | None = Field(0.5, gt=0, le=1)
    consecutive_failures: int | None = Field(5, ge=1)
    rate_limited_share: float | None = Field(None, gt=0, le=1)
    p95_ttft_ms: int | None = Field(None, ge=1)
    p95_latency_ms: int | None = Field(None, ge=1)


class Breaker(Strict):
    """Envoy-style ejection: base times the number of ejections, capped; then half-open
    lets a few probes through."""

    base_ejection_s: float = Field(5.0, gt=0)
    max_ejection_s: float = Field(300.0, gt=0)
    half_open_probes: int = Field(1, ge=1)


class Hedge(Strict):
    """Start a second attempt on the next target when the first has produced nothing (no
    first token) by `delay_ms`, or by the first target's recent p95 when unset; the first to
    answer wins and the other is cancelled. A budget caps the duplicate requests."""

    delay_ms: int | None = Field(None, ge=1)
    default_delay_ms: int = Field(1_000, ge=1)  # until the target has a p95
    budget_ratio: float = Field(0.05, gt=0, le=1)
    budget_min: int = Field(1, ge=0)
    budget_window_s: float = Field(60.0, gt=0)


class Route(Strict):
    targets: list[Target] = Field(min_length=1)
    # Which endpoints this route serves; by default every endpoint its targets support.
    endpoints: list[Endpoint] | None = None
    strategy: Strategy = "priority"
    latency_budget_ms: int | None = Field(None, ge=1)
    ttft_budget_ms: int | None = Field(None, ge=1)
    # Expected output when the request sets no max_tokens (feasibility estimates).
    typical_output_tokens: int = Field(256, ge=1)
    retry: RetryPolicy = RetryPolicy()
    fail_over_when: FailOverWhen = FailOverWhen()
    breaker: Breaker = Breaker()
    hedge: Hedge | None = None
    limits: Limits = Limits()
    # Where a request goes when a target says its prompt is over the context window.
    on_context_too_long: Target | None = None
    # Continue a stream that broke after output began on another target (see README).
    resume_streams: bool = False
    # A full self-hosted pool with `when_full: cap_context` may cap this route's max_tokens.
    allow_cap_context: bool = False
    prompt_cache: PromptCache = PromptCache()


class KeyConfig(Strict):
    name: str = Field(min_length=1)
    team: str | None = None
    key: SecretStr | None = None
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    # Route names this key may use; None means every route.
    routes: list[str] | None = None
    admin: bool = False
    # The self-hosted pool sheds sheddable traffic first and queues critical traffic first;
    # a request's `x-spillover-priority` header may lower it, never raise it.
    priority: Priority = "standard"
    limits: Limits = Limits()
    budget: Budget = Budget()

    @model_validator(mode="after")
    def _exactly_one_secret(self) -> KeyConfig:
        if (self.key is None) == (self.key_sha256 is None):
            raise ValueError("give exactly one of 'key' or 'key_sha256'")
        if self.key is not None and not self.key.get_secret_value():
            raise ValueError("'key' is empty (is its ${VAR} unset?)")
        return self


class StateConfig(Strict):
    """Where shared routing state lives: this process, or Redis for many replicas."""

    backend: Literal["memory", "redis"] = "memory"
    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "spillover:"
    # Redis calls on the request path give up after this long and fall back to local state.
    timeout_ms: int = Field(50, ge=1)


class LedgerConfig(Strict):
    """One row per request. SQLite by default; `postgresql://…` for many replicas."""

    url: str = "sqlite:///spillover-ledger.sqlite"
    batch_size: int = Field(500, ge=1)
    flush_ms: int = Field(200, ge=1)
    # Rows held in memory when the journal's disk fails; past it, requests get 503.
    queue_size: int = Field(50_000, ge=1)
    # Where each row is appended before its answer completes (default: beside a SQLite
    # file, else spillover-ledger-<hash of url>.journal). Rows wait there while the
    # database is away; past journal_max_bytes new requests get 503 (never an unbilled
    # answer).
    journal_dir: str | None = None
    journal_segment_bytes: int = Field(16 * 1024 * 1024, ge=4096)
    journal_max_bytes: int = Field(1024**3, ge=1024 * 1024)
    # A spool file left by a gateway older than the journal: replayed at start.
    spool_path: str = "spillover-ledger.spool.jsonl"


class DrillsConfig(Strict):
    """Fault injection through /admin/faults (admin keys only); off unless enabled."""

    enabled: bool = False
    # The longest fault /admin/faults accepts: a forgotten fault ends by itself.
    max_fault_s: float = Field(3_600.0, gt=0, le=86_400)


class GatewayConfig(Strict):
    server: ServerConfig = ServerConfig()
    drills: DrillsConfig = DrillsConfig()
    state: StateConfig = StateConfig()
    ledger: LedgerConfig = LedgerConfig()
    providers: dict[str, ProviderConfig] = Field(min_length=1)
    routes: dict[str, Route] = Field(min_length=1)
    keys: list[KeyConfig] = Field(min_length=1)
    teams: dict[str, TeamConfig] = Field(default_factory=dict)
    # Budget days and months are calendar periods in this time zone.
    timezone: str = "UTC"

    @model_validator(mode="after")
    def _known_timezone(self) -> GatewayConfig:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        return self
