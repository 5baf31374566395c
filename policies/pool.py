"""The YAML model of a self-hosted vLLM pool (`kind: vllm_pool`): where the replicas are, how
they are warmed and watched, how a replica is chosen, and — explicitly — what happens when the
pool is full."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from policies.schema_base import PriceOverride, Strict, Timeouts

PoolStrategy = Literal["prefix_affinity", "least_tokens", "least_requests", "round_robin"]
Priority = Literal["critical", "standard", "sheddable"]
PRIORITY_RANK: dict[Priority, int] = {"critical": 0, "standard": 1, "sheddable": 2}
WhenFull = Literal["queue", "reject", "cap_context"]


class Discover(Strict):
    """Replicas from a DNS name (a headless Kubernetes service): every A/AAAA record."""

    dns: str = Field(min_length=1)
    port: int = Field(8000, ge=1, le=65535)
    every_s: float = Field(10.0, gt=0)
    scheme: Literal["http", "https"] = "http"


class WarmUp(Strict):
    """The request a replica must answer before it gets traffic (it compiles kernels and
    fills caches, so the first user does not pay for it)."""

    prompt: str = "Say hello."
    max_tokens: int = Field(8, ge=1)
    timeout_s: float = Field(60.0, gt=0)


class Health(Strict):
    every_s: float = Field(2.0, gt=0)
    timeout_s: float = Field(2.0, gt=0)
    # Consecutive failed checks that take a ready replica out of rotation.
    unhealthy_after: int = Field(2, ge=1)


class Scrape(Strict):
    every_s: float = Field(1.0, gt=0)
    timeout_s: float = Field(0.5, gt=0)
    jitter: float = Field(0.1, ge=0, le=0.5)
    # A replica whose metrics are older than this is treated as unknown load (not as idle).
    stale_after_s: float = Field(5.0, gt=0)


class QueuePolicy(Strict):
    max_size: int = Field(64, ge=0)
    # Never longer than the request's own deadline.
    max_wait_ms: int = Field(5_000, ge=1)


class Admission(Strict):
    """When a replica may take one more request, and what happens when none can."""

    # A replica above this KV-cache usage takes no new request.
    max_kv_usage: float = Field(0.92, gt=0, le=1)
    # A replica with more than this many requests waiting takes no new request.
    max_waiting: int = Field(4, ge=0)
    # Count each in-flight request's expected output (max_tokens, or the route's
    # typical_output_tokens) as KV it will hold, so this gateway never promises a replica more
    # cache than it has (no preemption storms). Off: only prompts count — for clients whose
    # max_tokens is far above what they use.
    reserve_output: bool = True
    # Prompts above this size go only where the KV cache has room for the prompt and output.
    long_context_tokens: int = Field(8_000, ge=1)
    # Sheddable traffic stops once the pool's mean KV usage passes this (default: 80% of
    # max_kv_usage).
    sheddable_kv_usage: float | None = Field(None, gt=0, le=1)
    when_full: WhenFull = "queue"
    queue: QueuePolicy = QueuePolicy()
    # For `cap_context`: the output cap a request gets when the pool is full (routes opt in).
    cap_max_tokens: int = Field(256, ge=1)

    @model_validator(mode="after")
    def _sheddable_below_max(self) -> Admission:
        if self.sheddable_kv_usage is not None and self.sheddable_kv_usage > self.max_kv_usage:
            raise ValueError("sheddable_kv_usage must not be above max_kv_usage")
        return self

    @property
    def sheddable_threshold(self) -> float:
        return self.sheddable_kv_usage or 0.8 * self.max_kv_usage


class Routing(Strict):
    strategy: PoolStrategy = "prefix_affinity"
    # Prefix hashing granularity (vLLM's KV block size in tokens) and how many blocks count.
    block_tokens: int = Field(16, ge=1)
    max_prefix_blocks: int = Field(256, ge=1)
    # Bounded load: affinity yields when a replica's load passes mean * factor + slack tokens.
    load_factor: float = Field(1.25, ge=1)
    load_slack_tokens: int = Field(2_048, ge=0)


class VllmPoolProvider(Strict):
    """A pool of vLLM servers speaking the OpenAI API. Give `replicas`, `discover`, or an
    `endpoint` (a router such as vllm-router in front of the pool) with the replicas listed
    for their metrics."""

    kind: Literal["vllm_pool"]
    model: str = Field(min_length=1)
    replicas: list[str] = Field(default_factory=list)
    discover: Discover | None = None
    endpoint: str | None = None
    api_key: SecretStr | None = None
    gpu_cost_per_hour: float = Field(0.0, ge=0)
    min_warm_replicas: int = Field(1, ge=0)
    warm_up: WarmUp = WarmUp()
    health: Health = Health()
    scrape: Scrape = Scrape()
    admission: Admission = Admission()
    routing: Routing = Routing()
    timeouts: Timeouts = Timeouts()
    max_connections: int = Field(512, ge=1)
    prices: dict[str, PriceOverride] = Field(default_factory=dict)
    # For `spillover pool launch`: how to start local `vllm serve` processes.
    launch: Launch | None = None

    @model_validator(mode="after")
    def _where_the_replicas_are(self) -> VllmPoolProvider:
        if not self.replicas and self.discover is None:
            raise ValueError("give 'replicas' (URLs) or 'discover' (a DNS name)")
        if self.replicas and self.discover is not None:
            raise ValueError("give 'replicas' or 'discover', not both")
        return self


class Launch(Strict):
    """Local `vllm serve` processes for `spillover pool launch`, one per replica URL."""

    vllm: str = ".venv-vllm/bin/vllm"
    model_path: str
    max_model_len: int = Field(2048, ge=16)
    max_num_seqs: int = Field(8, ge=1)
    kv_blocks: int | None = Field(None, ge=1)
    kv_cache_gib: float | None = Field(None, gt=0)
    prefix_caching: bool = True
    # vLLM's --speculative-config as a mapping, e.g. {method: ngram, num_speculative_tokens: 4}.
    speculative: dict[str, str | int | float] | None = None
    extra_args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    # Model load time counts: a replica gets this long to answer /health before a restart.
    start_timeout_s: float = Field(300.0, gt=0)
    restart_backoff_s: float = Field(2.0, gt=0)
    restart_backoff_max_s: float = Field(60.0, gt=0)


VllmPoolProvider.model_rebuild()
