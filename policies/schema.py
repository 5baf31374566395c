"""The YAML model. Every model forbids unknown keys so a typo is an error, not a default."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from policies.pool import Priority, VllmPoolProvider
from policies.route import Route
from policies.route_names import RouteNames
from policies.schema_base import Limits, PriceOverride, Strict, Timeouts

# The wire protocols the gateway speaks, both ways: OpenAI's chat (and completions,
# embeddings), Anthropic's Messages, OpenAI's Responses. A request's `ingress` (its row's
# column, its metrics' label) is the one its client spoke.
WireProtocol = Literal["openai", "anthropic", "responses"]


class Budget(Strict):
    """Spend limits in USD per calendar day and month (in `GatewayConfig.timezone`). `hard`
    refuses requests once spent; `soft` only warns (metric, log, response header)."""

    daily_usd: float | None = Field(None, gt=0)
    """Spend per calendar day, in USD."""
    monthly_usd: float | None = Field(None, gt=0)
    """Spend per calendar month, in USD."""
    mode: Literal["hard", "soft"] = "hard"
    """`hard` refuses with 429 `budget_exceeded`; `soft` only warns (metric, log, `x-spillover-
    budget-warning`)."""


class TeamConfig(Strict):
    limits: Limits = Limits()
    """Limits shared by every key of the team."""
    budget: Budget = Budget()
    """Budget shared by every key of the team."""


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    """Address to listen on."""
    metrics_require_key: bool = False
    """`/metrics` answers only a request with an admin or viewer key (`Authorization: Bearer
    …`; Prometheus: `authorization: {credentials_file: …}`): its series name teams, keys and
    their spend. Off: keep the port off the public network instead."""
    forwarded_allow_ips: list[str] = Field(default_factory=list)
    """Addresses (or CIDRs) of the reverse proxies whose `X-Forwarded-For` / `-Proto` are
    believed; empty: none, and a client's address is its connection's (the console's
    sign-in throttle counts by it)."""
    port: int = Field(4000, ge=1, le=65535)
    """Port to listen on."""
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Request bodies above this are refused with 413; the gateway never reads more than this plus
    64 KiB."""
    max_json_depth: int = Field(64, ge=4, le=200)
    """Objects and arrays nested deeper than this are refused at the edge (400): the stages and
    encoders after it recurse, and no real request nests this deep. Below 250, the JSON encoder's
    own limit."""
    max_header_bytes: int = Field(64 * 1024, ge=4096, le=1024 * 1024)
    """A request's head (request line and headers) larger than this is answered 431."""
    workers: int = Field(1, ge=1, le=64)
    """Worker processes; prefer more replicas with one worker each (each worker has its own
    metrics). With `state.backend: memory` each worker also keeps its own limits, budgets and
    breakers (a warning at start says so); `redis` shares them."""
    heavy_lane_bytes: int = Field(1024 * 1024, ge=0)
    """A request whose body (or body of unknown size), or whose stored conversation
    (`previous_response_id`), is larger than this is served by the heavy lane: one more
    process beside the workers, at a lower CPU priority, so parsing and forwarding megabytes
    never stalls another tenant's small request. 0: no lane. None is started when neither
    `max_body_bytes` nor `responses.max_history_bytes` exceeds this, nor (yet) when the config
    has a self-hosted pool: its probing and warm-up are one process's job. With
    `state.backend: memory` the lane keeps its own limits and budgets, as a worker does."""
    heavy_lane_nice: int = Field(10, ge=0, le=19)
    """The heavy lane's niceness: how far it yields the CPU to the workers."""
    access_log: bool = False
    """One log line per request at INFO."""
    log_format: Literal["text", "json"] = "text"
    """`json`: one object per line (ts, level, logger, message, the request id on every line
    logged while serving a request, and a line's own fields) for a log pipeline."""
    keep_alive_s: float = Field(75.0, gt=0)
    """An idle client connection stays open this long. Above a load balancer's idle timeout (60 s on
    AWS ALB and GCP), so the balancer, not the gateway, closes idle connections: a gateway closing
    first races the balancer's next request on that connection (a 502)."""
    drain_s: float = Field(5.0, ge=0, le=300)
    """On SIGTERM, /health/ready answers 503 for this long while requests are still served, so load
    balancers take the replica out before it stops accepting."""
    graceful_shutdown_s: float = Field(30.0, ge=0)
    """Then stop accepting, and give in-flight requests and streams this long to finish."""
    reload_poll_s: float = Field(2.0, ge=0)
    """How often to look for a changed config file (0: only SIGHUP and POST /admin/reload)."""


class _ProviderBase(Strict):
    api_base: str | None = None
    """The upstream's base URL."""
    api_key: SecretStr | None = None
    """The upstream's key (use `${ENV}`); never logged, never the client's."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Headers sent with every request to this provider."""
    timeouts: Timeouts = Timeouts()
    """Per-attempt timeouts, cut shorter by the request's deadline."""
    max_connections: int = Field(512, ge=1)
    """Pooled connections to this upstream."""
    prices: dict[str, PriceOverride] = Field(default_factory=dict)
    """Prices per upstream model, over litellm's map (e.g. negotiated or self-hosted)."""


class OpenAIProvider(_ProviderBase):
    """Any upstream that speaks the OpenAI wire format (OpenAI, vLLM, Groq, Together, …)."""

    kind: Literal["openai"]
    """Any upstream that speaks the OpenAI wire format."""
    api_base: str = "https://api.openai.com/v1"
    """The upstream's base URL, including `/v1`."""
    responses_api: bool = False
    """The upstream serves OpenAI's Responses API (`POST /responses`): Responses clients'
    requests go to it as sent (history expanded by the gateway, `store: false`) rather than
    translated to chat completions."""


class AnthropicProvider(_ProviderBase):
    kind: Literal["anthropic"]
    """Anthropic's Messages API, translated from and to the OpenAI format."""
    api_base: str = "https://api.anthropic.com"
    """The Messages API's base URL."""
    anthropic_version: str = "2023-06-01"
    """The `anthropic-version` header sent upstream."""
    default_max_tokens: int = Field(4096, ge=1)
    """Anthropic requires max_tokens; used when the OpenAI request carries none."""


class LiteLLMProvider(_ProviderBase):
    """The long tail (Bedrock, Vertex, Gemini, Cohere, …) through litellm, loaded lazily."""

    kind: Literal["litellm"]
    """The long tail through litellm (imported only when this kind is used)."""
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """Extra keyword arguments handed to litellm as they are (aws_region_name, vertex_project,
    …)."""


ProviderConfig = Annotated[
    OpenAIProvider | AnthropicProvider | LiteLLMProvider | VllmPoolProvider,
    Field(discriminator="kind"),
]


class KeyConfig(Strict):
    name: str = Field(min_length=1)
    """The key's name in metrics, the ledger and reports."""
    team: str | None = None
    """The team whose limits and budget also apply."""
    key: SecretStr | None = None
    """The key itself (use `${ENV}`); held only as its SHA-256."""
    key_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    """The key's SHA-256 in hex, instead of `key`."""
    routes: list[str] | None = None
    """Route names this key may use; None means every route."""
    admin: bool = False
    """May use the admin API, and sign in to the console and act there."""
    viewer: bool = False
    """May sign in to the console and read it (no actions, no admin API)."""
    priority: Priority = "standard"
    """The self-hosted pool sheds sheddable traffic first and queues critical traffic first; a
    request's `x-spillover-priority` header may lower it, never raise it."""
    limits: Limits = Limits()
    """Limits on this key."""
    budget: Budget = Budget()
    """Budget of this key."""

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
    """`memory` for one process; `redis` to share routing state and limits across replicas."""
    url: str = "redis://127.0.0.1:6379/0"
    """Redis URL."""
    key_prefix: str = "spillover:"
    """Prefix of every Redis key."""
    timeout_ms: int = Field(50, ge=1)
    """Redis calls on the request path give up after this long and fall back to local state."""


class LedgerConfig(Strict):
    """One row per request. SQLite by default; `postgresql://…` for many replicas."""

    url: str = "sqlite:///spillover-ledger.sqlite"
    """`sqlite:///path` or `postgresql://user@host:port/db`."""

    batch_size: int = Field(500, ge=1)
    """Rows per insert …"""
    flush_ms: int = Field(200, ge=1)
    """… or rows this old, whichever comes first."""
    queue_size: int = Field(50_000, ge=1)
    """Rows held in memory when the journal's disk fails; past it, requests get 503."""
    journal_dir: str | None = None
    """Where each row is appended before its answer completes (default: beside a SQLite file, else
    spillover-ledger-<hash of url>.journal). Rows wait there while the database is away; past
    journal_max_bytes new requests get 503 (never an unbilled answer)."""
    journal_segment_bytes: int = Field(16 * 1024 * 1024, ge=4096)
    """A journal segment is rotated at this size."""
    journal_max_bytes: int = Field(1024**3, ge=1024 * 1024)
    """Past this, new requests get 503 `ledger_unavailable` (never an unbilled answer)."""
    spool_path: str = "spillover-ledger.spool.jsonl"
    """A spool file left by a gateway older than the journal: replayed at start."""

    @field_validator("url")
    @classmethod
    def _sqlite_takes_no_query(cls, url: str) -> str:
        # The writer opens the file by path and the reports through SQLAlchemy, which would
        # pass a query's parameters to sqlite3 itself: the two would disagree, or fail.
        if url.startswith("sqlite") and "?" in url:
            raise ValueError("a sqlite:/// ledger URL takes no query string")
        return url


class ResponsesConfig(Strict):
    """Responses API clients' stored responses (`store: true`, `previous_response_id`)."""

    retention_days: float = Field(30.0, gt=0)
    """How long a stored response can be retrieved or continued; then it is deleted."""
    max_history_bytes: int = Field(8 * 1024 * 1024, ge=64 * 1024)
    """The most a `previous_response_id` chain may hold (its items as stored JSON), measured
    in the database before anything is loaded: a longer conversation is refused with 413."""
    max_history_bytes_in_flight: int = Field(64 * 1024 * 1024, ge=64 * 1024)
    """Stored history all requests of this process may hold loaded at once; past it, a
    request with `previous_response_id` gets 429 with Retry-After (one always fits)."""
    max_stored_per_owner: int = Field(10_000, ge=1)
    """Live stored responses one owner (a team, else a key) may hold; past it, a request
    with `store` on gets 429 `stored_responses_quota` (delete some, or send `store: false`)."""
    max_stored_bytes_per_owner: int = Field(1024 * 1024 * 1024, ge=1024 * 1024)
    """Bytes of live stored responses one owner may hold; past it, the same 429."""


class TracingConfig(Strict):
    """OpenTelemetry traces: a span per request and one per upstream attempt, with the GenAI
    semantic conventions, exported over OTLP/HTTP. Off unless an endpoint is set."""

    otlp_endpoint: str | None = None
    """The collector's traces URL, e.g. `http://otel-collector:4318/v1/traces`; unset: off,
    and nothing is traced (no cost on the request path)."""
    service_name: str = "spillover"
    """`service.name` of the spans."""
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Headers for the collector (an API key: use `${ENV}`)."""
    sample_ratio: float = Field(1.0, ge=0, le=1)
    """Share of new traces recorded; a client's `traceparent` sampling decision is kept."""
    export_every_ms: int = Field(1000, ge=10)
    """Spans are sent in batches at most this far apart."""


class DrillsConfig(Strict):
    """Fault injection through /admin/faults (admin keys only); off unless enabled."""

    enabled: bool = False
    """Accept faults on /admin/faults."""
    max_fault_s: float = Field(3_600.0, gt=0, le=86_400)
    """The longest fault /admin/faults accepts: a forgotten fault ends by itself."""


class ConsoleConfig(Strict):
    """The web console at `/ui`: sign in with an admin or viewer key."""

    enabled: bool = True
    """Serve the console."""
    session_ttl_s: float = Field(8 * 3600.0, ge=60, le=7 * 86_400)
    """A sign-in lasts this long."""
    session_secret: SecretStr | None = None
    """Signs session cookies (use `${ENV}`, 32+ characters). Unset: a random secret per start,
    shared by the workers of one `spillover serve`; a restart then signs everyone out. Set,
    with `state.backend: redis`, sessions and sign-outs hold across replicas and restarts;
    with `memory` state a restart still signs everyone out (it forgets who signed out)."""
    sample_s: float = Field(5.0, ge=0.2, le=60)
    """How often the console samples the gateway's metrics for its charts."""
    secure_cookie: bool | None = None
    """Mark the session cookie `Secure`; unset: when the sign-in came over HTTPS (set `true`
    behind a proxy that terminates TLS and does not send `X-Forwarded-Proto`)."""

    @field_validator("session_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("session_secret must be at least 32 characters")
        return value


class ResponseCacheConfig(Strict):
    """Where answers of routes with `cache: {enabled: true}` are kept."""

    backend: Literal["memory", "redis"] = "memory"
    """`memory`: this process, bounded by `max_bytes` (least recently used out first);
    `redis`: shared by every replica (needs `state.backend: redis`), compressed, each entry
    expiring by itself. Redis away: requests are served uncached, never refused."""
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)
    """The memory backend's bound."""


class KeyringConfig(Strict):
    """Keys and teams kept as data in the ledger's database, managed with `/admin/keys`,
    `/admin/teams` and `spillover keys` (docs: Manage keys), beside the keys of this file."""

    enabled: bool = True
    """Off: only the keys of this file authenticate; the admin API's key routes answer 404."""
    refresh_s: float = Field(0.5, ge=0.05, le=60)
    """How often each process checks the database for changes made elsewhere: the bound on
    how late a revocation reaches it without Redis (with shared state, changes arrive at once)."""


class GatewayConfig(Strict):
    server: ServerConfig = ServerConfig()
    """The HTTP server."""
    console: ConsoleConfig = ConsoleConfig()
    """The web console at `/ui`."""
    drills: DrillsConfig = DrillsConfig()
    """Fault injection for failover drills."""
    state: StateConfig = StateConfig()
    """Where routing state and limit counters live."""
    ledger: LedgerConfig = LedgerConfig()
    """Where ledger rows go."""
    responses: ResponsesConfig = ResponsesConfig()
    """Stored Responses (kept in the ledger's database)."""
    keyring: KeyringConfig = KeyringConfig()
    """Keys and teams as data (kept in the ledger's database)."""
    response_cache: ResponseCacheConfig = ResponseCacheConfig()
    """Where cached answers are kept (each route turns its cache on)."""
    tracing: TracingConfig = TracingConfig()
    """OpenTelemetry traces (off by default)."""
    providers: dict[str, ProviderConfig] = Field(min_length=1)
    """Upstreams by name; `kind` chooses the wire format."""
    routes: dict[str, Route] = Field(min_length=1)
    """The model names clients send, each with its targets."""
    keys: list[KeyConfig] = Field(min_length=1)
    """Client keys."""
    teams: dict[str, TeamConfig] = Field(default_factory=dict)
    """Limits and budgets shared by a team's keys."""
    timezone: str = "UTC"
    """Budget days and months are calendar periods in this time zone."""

    @cached_property
    def route_names(self) -> RouteNames:
        """Client model names (route names, aliases, patterns) → route names."""
        return RouteNames({name: route.aliases for name, route in self.routes.items()})

    @model_validator(mode="after")
    def _known_timezone(self) -> GatewayConfig:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        return self

    @model_validator(mode="after")
    def _cache_backend_reachable(self) -> GatewayConfig:
        if self.response_cache.backend == "redis" and self.state.backend != "redis":
            raise ValueError("response_cache.backend: redis needs state.backend: redis")
        return self
