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
    """Replicas from a DNS name (a headless Kubernetes service: every A/AAAA record) or from a
    file of URLs (`spillover pool launch` writes it: a replica is listed once it is up and
    warm, and unlisted before it stops). A replica that leaves is drained: no new request, the
    ones in flight finish."""

    dns: str | None = Field(None, min_length=1)
    """The DNS name to resolve (every A/AAAA record is a replica)."""
    file: str | None = Field(None, min_length=1)
    """A JSON file `{"replicas": [URL, ...]}`, read again every `every_s`; missing means none."""
    port: int = Field(8000, ge=1, le=65535)
    """The replicas' port (with `dns`)."""
    every_s: float = Field(10.0, gt=0)
    """How often to resolve the name (or read the file) again."""
    scheme: Literal["http", "https"] = "http"
    """The replicas' scheme (with `dns`)."""

    @model_validator(mode="after")
    def _one_source(self) -> Discover:
        if (self.dns is None) == (self.file is None):
            raise ValueError("give 'dns' or 'file', one of them")
        return self


class WarmUp(Strict):
    """The request a replica must answer before it gets traffic (it compiles kernels and
    fills caches, so the first user does not pay for it)."""

    prompt: str = "Say hello."
    """The warm-up request's prompt."""
    max_tokens: int = Field(8, ge=1)
    """The warm-up request's max_tokens."""
    timeout_s: float = Field(60.0, gt=0)
    """How long the warm-up may take before it counts as failed."""


class Health(Strict):
    every_s: float = Field(2.0, gt=0)
    """How often each replica's /health is checked."""
    timeout_s: float = Field(2.0, gt=0)
    """A health check slower than this failed."""
    unhealthy_after: int = Field(2, ge=1)
    """Consecutive failed checks that take a ready replica out of rotation."""


class Scrape(Strict):
    every_s: float = Field(1.0, gt=0)
    """How often each replica's /metrics is read."""
    timeout_s: float = Field(0.5, gt=0)
    """A scrape slower than this failed."""
    jitter: float = Field(0.1, ge=0, le=0.5)
    """Random share added to each interval so replicas are not scraped in step."""
    stale_after_s: float = Field(5.0, gt=0)
    """A replica whose metrics are older than this is treated as unknown load (not as idle)."""


class QueuePolicy(Strict):
    max_size: int = Field(64, ge=0)
    """Requests waiting for a replica; past it, requests are shed (503)."""
    max_wait_ms: int = Field(5_000, ge=1)
    """Never longer than the request's own deadline."""


class Admission(Strict):
    """When a replica may take one more request, and what happens when none can."""

    max_kv_usage: float = Field(0.92, gt=0, le=1)
    """A replica above this KV-cache usage takes no new request."""
    max_waiting: int = Field(4, ge=0)
    """A replica with more than this many requests waiting takes no new request."""
    reserve_output: bool = True
    """Count each in-flight request's expected output (max_tokens, or the route's
    typical_output_tokens) as KV it will hold, so this gateway never promises a replica more cache
    than it has (no preemption storms). Off: only prompts count — for clients whose max_tokens is
    far above what they use."""
    long_context_tokens: int = Field(8_000, ge=1)
    """Prompts above this size go only where the KV cache has room for the prompt and output."""
    sheddable_kv_usage: float | None = Field(None, gt=0, le=1)
    """Sheddable traffic stops once the pool's mean KV usage passes this (default: 80% of
    max_kv_usage)."""
    when_full: WhenFull = "queue"
    """`queue` (wait for room), `reject` (503 now) or `cap_context` (cap max_tokens; routes
    opt in)."""
    queue: QueuePolicy = QueuePolicy()
    """The wait queue when `when_full: queue`."""
    cap_max_tokens: int = Field(256, ge=1)
    """For `cap_context`: the output cap a request gets when the pool is full (routes opt in)."""

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
    """How a replica is chosen among those with room."""
    block_tokens: int = Field(16, ge=1)
    """Prefix hashing granularity (vLLM's KV block size in tokens) and how many blocks count."""
    max_prefix_blocks: int = Field(256, ge=1)
    """How many leading prefix blocks are hashed."""
    load_factor: float = Field(1.25, ge=1)
    """Bounded load: affinity yields when a replica's load passes mean * factor + slack tokens."""
    load_slack_tokens: int = Field(2_048, ge=0)
    """Tokens added to the bounded-load limit."""


class GpuType(Strict):
    """One GPU type the pool may run on, with what one replica of the pool's model does on it
    (bench it: `bench/pool_procs.py`, or vLLM's own start-up log for the KV cache)."""

    usd_per_hour: float = Field(gt=0)
    """One GPU's price per hour."""
    memory_gb: float = Field(gt=0)
    """One GPU's memory."""
    gpus_per_replica: int = Field(1, ge=1)
    """GPUs one replica of the model takes (tensor parallel)."""
    kv_tokens_per_replica: int = Field(ge=1)
    """One replica's KV cache, in tokens ('KV cache size: N tokens' in vLLM's log)."""
    tokens_per_s: float = Field(gt=0)
    """Prompt + output tokens per second one replica sustains within the SLO."""
    lead_time_s: float = Field(600, ge=0)
    """From asking for a replica to it serving: provisioning, image pull, model load, warm-up."""


class Capacity(Strict):
    """What scaling the pool ahead of demand needs (docs: Scaling the pool)."""

    model_memory_gb: float = Field(gt=0)
    """What one replica of the model needs in GPU memory before any KV cache (weights and
    runtime): a GPU type with less (across its GPUs per replica) is never planned."""
    gpus: dict[str, GpuType] = Field(min_length=1)
    """The GPU types the pool may run on, by name."""
    headroom: float = Field(0.2, ge=0, le=2)
    """Spare capacity over the forecast p99."""
    warm_floor_margin: float = Field(0.2, ge=0, le=2)
    """The warm floor: off-peak demand plus this share, never scaled below."""
    memory_fit: float = Field(0.9, gt=0, le=1)
    """The share of GPU memory the model may take (the rest: the KV cache, the runtime)."""
    refresh_s: float = Field(300, ge=1, le=3600)
    """How often the gateway reads the ledger again for `spillover_pool_desired_replicas`."""
    history_days: int = Field(28, ge=8, le=365)
    """How much of the ledger the forecast learns from (at least a week and a day)."""


class VllmPoolProvider(Strict):
    """A pool of vLLM servers speaking the OpenAI API. Give `replicas`, `discover`, or an
    `endpoint` (a router such as vllm-router in front of the pool) with the replicas listed
    for their metrics."""

    kind: Literal["vllm_pool"]
    """A pool of vLLM servers."""
    model: str = Field(min_length=1)
    """The model the replicas serve."""
    replicas: list[str] = Field(default_factory=list)
    """Replica base URLs."""
    discover: Discover | None = None
    """Replicas from DNS, instead of `replicas`."""
    endpoint: str | None = None
    """A router in front of the pool: requests go there; the replicas are still scraped."""
    api_key: SecretStr | None = None
    """The replicas' key, if they require one."""
    gpu_cost_per_hour: float = Field(0.0, ge=0)
    """USD per replica-hour. A request's price is its share of that at capacity:
    `gpu_cost_per_hour / tokens_per_replica_hour` per token, prompt and output alike."""
    tokens_per_replica_hour: int | None = Field(None, ge=1)
    """Tokens (prompt and output) one replica sustains in an hour at capacity, measured by a
    load test that saturates it (its prompt plus generation tokens per second, times 3600).
    With `gpu_cost_per_hour` it prices every request the same,
    from the first one; idle capacity is never charged to a request. Unset (with a GPU
    cost): the pool's requests are recorded with an unknown cost, never a guess."""
    min_warm_replicas: int = Field(1, ge=0)
    """The pool is ready once this many replicas are warm."""
    warm_up: WarmUp = WarmUp()
    """The request a replica must answer before it gets traffic."""
    health: Health = Health()
    """Health checks."""
    scrape: Scrape = Scrape()
    """Reading the replicas' /metrics."""
    admission: Admission = Admission()
    """When a replica may take one more request, and what happens when none can."""
    routing: Routing = Routing()
    """How a replica is chosen."""
    timeouts: Timeouts = Timeouts()
    """Per-attempt timeouts."""
    max_connections: int = Field(512, ge=1)
    """Pooled connections to the replicas."""
    capacity: Capacity | None = None
    """GPU types and the model's needs: for `spillover plan --schedule` (off unless set)."""
    prices: dict[str, PriceOverride] = Field(default_factory=dict)
    """Prices per model; overrides the price derived from gpu_cost_per_hour."""
    launch: Launch | None = None
    """For `spillover pool launch`: how to start local `vllm serve` processes."""

    @model_validator(mode="after")
    def _where_the_replicas_are(self) -> VllmPoolProvider:
        if not self.replicas and self.discover is None:
            raise ValueError("give 'replicas' (URLs) or 'discover' (a DNS name)")
        if self.replicas and self.discover is not None:
            raise ValueError("give 'replicas' or 'discover', not both")
        if self.launch is not None:
            self._launchable(self.launch)
        return self

    def _launchable(self, launch: Launch) -> None:
        by_file = self.discover is not None and self.discover.file is not None
        if self.discover is not None and not by_file:
            raise ValueError("launch: a pool discovered by DNS is not launched locally")
        if by_file and not launch.replicas:
            raise ValueError("launch.replicas: the URLs to start (the pool discovers a file)")
        if self.replicas and launch.replicas:
            raise ValueError("launch.replicas: the pool lists its replicas already")
        if launch.scale == "schedule":
            if not by_file:
                raise ValueError("launch.scale: schedule needs discover: {file: ...}")
            if self.capacity is None:
                raise ValueError("launch.scale: schedule needs the pool's capacity")
        gpus = self.capacity.gpus if self.capacity is not None else {}
        if launch.gpu is not None and launch.gpu not in gpus:
            raise ValueError(f"launch.gpu: {launch.gpu!r} is not one of capacity.gpus")
        if launch.scale == "schedule" and launch.gpu is None and len(gpus) > 1:
            raise ValueError("launch.gpu: name the GPU type of these processes")

    @property
    def launch_urls(self) -> list[str]:
        """The replicas `spillover pool launch` may start."""
        return (self.launch.replicas or self.replicas) if self.launch is not None else []

    @property
    def launch_gpu(self) -> str | None:
        """The GPU type of the locally launched replicas, if the pool has a capacity."""
        if self.capacity is None:
            return None
        if self.launch is not None and self.launch.gpu is not None:
            return self.launch.gpu
        return next(iter(self.capacity.gpus)) if len(self.capacity.gpus) == 1 else None


class Launch(Strict):
    """Local `vllm serve` processes for `spillover pool launch`, one per replica URL."""

    replicas: list[str] = Field(default_factory=list, max_length=64)
    """With `discover: {file: ...}`: the URLs the supervisor may start, in the order it starts
    them (the pool's own `replicas` otherwise)."""
    scale: Literal["all", "schedule"] = "all"
    """`all`: run every replica. `schedule`: run what the forecast needs one lead time ahead
    (the pool's `capacity`; never fewer than `min_warm_replicas`), starting a replica before
    the traffic comes and draining one before it stops; needs `discover: {file: ...}`."""
    gpu: str | None = None
    """The `capacity.gpus` type these processes are (default: the only one listed)."""
    drain_timeout_s: float = Field(120.0, gt=0)
    """Longest wait, once a replica is unlisted, for its requests in flight to finish."""

    vllm: str = ".venv-vllm/bin/vllm"
    """The `vllm` executable."""
    model_path: str
    """The model directory (offline)."""
    max_model_len: int = Field(2048, ge=16)
    """`--max-model-len`."""
    max_num_seqs: int = Field(8, ge=1)
    """`--max-num-seqs`."""
    kv_blocks: int | None = Field(None, ge=1)
    """`--num-gpu-blocks-override`: the KV cache size in blocks."""
    kv_cache_gib: float | None = Field(None, gt=0)
    """The KV cache size in GiB (vLLM on CPU: `VLLM_CPU_KVCACHE_SPACE`)."""
    prefix_caching: bool = True
    """`--enable-prefix-caching`."""
    speculative: dict[str, str | int | float] | None = None
    """vLLM's --speculative-config as a mapping, e.g. {method: ngram, num_speculative_tokens: 4}."""
    extra_args: list[str] = Field(default_factory=list)
    """More `vllm serve` arguments, as they are."""
    env: dict[str, str] = Field(default_factory=dict)
    """More environment variables for the replicas."""
    start_timeout_s: float = Field(300.0, gt=0)
    """Model load time counts: a replica gets this long to answer /health before a restart."""
    restart_backoff_s: float = Field(2.0, gt=0)
    """First wait before restarting a replica that exited."""
    restart_backoff_max_s: float = Field(60.0, gt=0)
    """Longest wait between restarts."""


VllmPoolProvider.model_rebuild()
