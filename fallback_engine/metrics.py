"""The pool's Prometheus metrics: per replica and per pool, the memory dimension (KV usage,
waiting) next to the compute one (tokens/s, TTFT, TPOT), and every shed request by reason.
Created once per gateway process, on the gateway's registry, and shared across reloads."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STATES = ("starting", "warming", "ready", "draining", "unhealthy")


class PoolMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._replicas(registry)
        self._pool(registry)
        self._decisions(registry)

    def _replicas(self, r: CollectorRegistry) -> None:
        """Per replica: its state, the memory dimension next to the compute one."""

        def replica_gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, ["pool", "replica"], registry=r)

        self.replica_state = Gauge(
            "spillover_pool_replica_state",
            "1 for the replica's current lifecycle state (starting, warming, ready, draining, "
            "unhealthy), 0 for the others.",
            ["pool", "replica", "state"],
            registry=r,
        )
        self.kv_usage = replica_gauge(
            "spillover_pool_replica_kv_cache_usage", "KV-cache usage (0-1) scraped from vLLM."
        )
        self.running = replica_gauge("spillover_pool_replica_running", "Requests running.")
        self.waiting = replica_gauge("spillover_pool_replica_waiting", "Requests waiting.")
        self.outstanding_tokens = replica_gauge(
            "spillover_pool_replica_outstanding_tokens",
            "Prompt plus expected output tokens this gateway has in flight at the replica.",
        )
        self.prompt_tps = replica_gauge(
            "spillover_pool_replica_prompt_tokens_per_second", "Prefill throughput."
        )
        self.generation_tps = replica_gauge(
            "spillover_pool_replica_generation_tokens_per_second", "Decode throughput."
        )
        self.prefix_hit_ratio = replica_gauge(
            "spillover_pool_replica_prefix_cache_hit_ratio",
            "Prefix-cache hits over queries (tokens) in the last scrape interval.",
        )
        self.spec_acceptance = replica_gauge(
            "spillover_pool_replica_spec_decode_acceptance_ratio",
            "Accepted over proposed speculative tokens in the last scrape interval.",
        )
        self.ttft = replica_gauge(
            "spillover_pool_replica_ttft_seconds", "Mean TTFT over the last scrape interval."
        )
        self.tpot = replica_gauge(
            "spillover_pool_replica_tpot_seconds",
            "Mean time per output token over the last scrape interval.",
        )
        self.preemptions = replica_gauge(
            "spillover_pool_replica_preemptions", "vLLM's preemption counter, as scraped."
        )

    def _pool(self, r: CollectorRegistry) -> None:
        """Per pool: warm replicas, mean KV usage, throughput, the queue."""

        def pool_gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, ["pool"], registry=r)

        self.warm_replicas = pool_gauge(
            "spillover_pool_warm_replicas", "Replicas ready (loaded, warmed, healthy)."
        )
        self.min_warm_replicas = pool_gauge(
            "spillover_pool_min_warm_replicas", "The configured floor, for scalers and alerts."
        )
        self.pool_kv_usage = pool_gauge(
            "spillover_pool_kv_cache_usage", "Mean KV-cache usage over ready replicas."
        )
        self.pool_tps = pool_gauge(
            "spillover_pool_tokens_per_second", "Prompt plus generation tokens per second."
        )
        self.pool_prefix_hit_ratio = pool_gauge(
            "spillover_pool_prefix_cache_hit_ratio", "Prefix-cache hit ratio over the pool."
        )
        self.queue_depth = pool_gauge(
            "spillover_pool_queue_depth", "Requests waiting at the gateway for pool room."
        )
        self.queue_wait = Histogram(
            "spillover_pool_queue_wait_seconds",
            "Time requests waited at the gateway for pool room.",
            ["pool"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )

    def _decisions(self, r: CollectorRegistry) -> None:
        """What the pool decided: sheds, picks, caps, scrape failures, state transitions."""
        self.shed = Counter(
            "spillover_pool_shed",
            "Requests the pool refused, by reason and priority.",
            ["pool", "reason", "priority"],
            registry=r,
        )
        self.picks = Counter(
            "spillover_pool_picks",
            "Replica choices by reason (affinity, least_loaded, load_guard, ...).",
            ["pool", "replica", "reason"],
            registry=r,
        )
        self.capped = Counter(
            "spillover_pool_capped_requests",
            "Requests admitted with max_tokens capped (when_full: cap_context).",
            ["pool"],
            registry=r,
        )
        self.scrape_errors = Counter(
            "spillover_pool_scrape_errors",
            "Failed /metrics scrapes.",
            ["pool", "replica"],
            registry=r,
        )
        self.transitions = Counter(
            "spillover_pool_replica_transitions",
            "Lifecycle transitions by target state.",
            ["pool", "replica", "state"],
            registry=r,
        )
