"""Prometheus metrics, one registry per gateway. Children are bound once per label set and
cached, so the request path pays a dict lookup and an increment, nothing more."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from fallback_engine.metrics import PoolMetrics
from gateway.upstream.pool import PoolState

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class UpstreamPools:
    """The upstream client's pools, read at scrape time from the generation being served
    (`source`, set when a config is swapped in): connections busy and idle, connections
    made, and requests sent again because a kept connection had gone stale."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[tuple[str, PoolState]]] = tuple

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        open_now, made, resent = self._families()
        for provider, pool in self.source():
            open_now.add_metric([provider, pool.origin, "busy"], pool.busy)
            open_now.add_metric([provider, pool.origin, "idle"], pool.idle)
            made.add_metric([provider, pool.origin], pool.connects)
            resent.add_metric([provider, pool.origin], pool.resends)
        yield from (open_now, made, resent)

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, CounterMetricFamily, CounterMetricFamily]:
        return (
            GaugeMetricFamily(
                "spillover_upstream_connections",
                "Connections to upstreams now, by provider, origin and state (busy, idle).",
                labels=["provider", "origin", "state"],
            ),
            CounterMetricFamily(
                "spillover_upstream_connects",
                "Connections made to upstreams (keep-alive working: this grows slowly).",
                labels=["provider", "origin"],
            ),
            CounterMetricFamily(
                "spillover_upstream_resends",
                "Requests sent again on a new connection: the kept one had gone stale.",
                labels=["provider", "origin"],
            ),
        )


class Serving:
    """Requests being served now by this process, across config generations."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests(r)
        self._heavy_lane(r)
        self._upstreams(r)
        self._money(r)
        self._caches_keys_and_forecasts(r)
        self._ledger(r)
        self._shared_state(r)
        self._config(r)
        self.tasks = Gauge(
            "spillover_event_loop_tasks",
            "asyncio tasks alive in this process (a leak shows as steady growth).",
            registry=r,
        )
        self.tasks.set_function(_task_count)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_open_fds, …
        self._children: dict[tuple[Any, ...], Any] = {}
        self.pool = PoolMetrics(r)
        self.upstream_pools = UpstreamPools()
        r.register(self.upstream_pools)

    def _requests(self, r: CollectorRegistry) -> None:
        """What clients asked and got: requests, latency, tokens, streams."""
        self.requests = Counter(
            "spillover_requests",
            "Client requests by route, endpoint, client protocol and final status.",
            ["route", "endpoint", "ingress", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "spillover_request_duration_seconds",
            "End-to-end request latency at the gateway.",
            ["route", "endpoint", "ingress"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft_seconds = Histogram(
            "spillover_time_to_first_token_seconds",
            "Time from request arrival to the first streamed event sent to the client.",
            ["route", "provider"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "spillover_requests_in_flight", "Requests being served now.", registry=r
        )
        # Counted by the pipeline as a plain integer (no lock on the request path), read
        # by the gauge when scraped.
        self.serving = Serving()
        self.in_flight.set_function(lambda: self.serving.count)
        self.tokens = Counter(
            "spillover_tokens",
            "Tokens by route, target and kind (prompt, completion, cached, cache_write, "
            "reasoning).",
            ["route", "provider", "model", "kind"],
            registry=r,
        )
        self.shape_changes = Counter(
            "spillover_prompt_shape_changes",
            "Requests the shape stage changed, by route and change (tools, volatile, "
            "system_ordered).",
            ["route", "change"],
            registry=r,
        )
        self.translation_dropped = Counter(
            "spillover_translation_dropped",
            "What translated requests were served without (route untranslatable: drop), by "
            "route, client protocol and what (field, block, tool).",
            ["route", "ingress", "what"],
            registry=r,
        )
        self.responses_unstored = Counter(
            "spillover_responses_unstored",
            "Responses answered with store: true that the response store could not keep "
            "(their previous_response_id chains end there).",
            registry=r,
        )
        self.stream_interrupted = Counter(
            "spillover_streams_interrupted",
            "Streams that failed after bytes reached the client (ended with an error event).",
            ["route", "provider"],
            registry=r,
        )
        self.streams_resumed = Counter(
            "spillover_streams_resumed",
            "Broken streams continued on another target (resume_streams), by route, the "
            "provider that broke and the one that continued.",
            ["route", "from_provider", "to_provider"],
            registry=r,
        )
        self.client_disconnects = Counter(
            "spillover_client_disconnects", "Streams whose client went away.", ["route"], registry=r
        )
        self.usage_estimated = Counter(
            "spillover_usage_estimated",
            "Streams cut before the upstream reported usage, billed on the gateway's count.",
            ["route", "provider"],
            registry=r,
        )

    def _heavy_lane(self, r: CollectorRegistry) -> None:
        """Which requests the heavy lane took (`gateway.http.heavy_lane`)."""
        self.heavy_lane_up = Gauge(
            "spillover_heavy_lane_up",
            "1 while the heavy lane answers its probe (large requests go to it); 0: the "
            "workers serve everything.",
            registry=r,
        )
        self.heavy_lane_requests = Counter(
            "spillover_heavy_lane_requests",
            "Requests the workers handed to the heavy lane, by reason (body: a large or "
            "unsized body; history: a long stored conversation).",
            ["reason"],
            registry=r,
        )

    def _upstreams(self, r: CollectorRegistry) -> None:
        """Attempts at targets and the routing decisions around them."""
        self.attempts = Counter(
            "spillover_upstream_attempts",
            "Upstream attempts by target and outcome (ok, failed, skipped) and error class.",
            ["provider", "model", "outcome", "error"],
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "spillover_upstream_attempt_duration_seconds",
            "Time to a full answer (or the first event of a stream) per target.",
            ["provider", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "spillover_fallbacks",
            "Requests served by a later target, by route and the first target's error class.",
            ["route", "reason"],
            registry=r,
        )
        self.hedges = Counter(
            "spillover_hedges",
            "Hedged requests: started, won (the hedge answered first), lost (the first "
            "target answered first), no_budget (a hedge was due but the budget was spent).",
            ["route", "outcome"],
            registry=r,
        )
        self.skips = Counter(
            "spillover_target_skips",
            "Targets passed over before an attempt, by reason (breaker_open, cooldown, "
            "no_headroom, deadline, unsupported).",
            ["route", "provider", "model", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "spillover_retries",
            "Retries asked for, by whether the retry budget allowed them.",
            ["route", "outcome"],
            registry=r,
        )
        self.deadline_exceeded = Counter(
            "spillover_deadline_exceeded",
            "Requests that ran out of their latency budget before a target answered.",
            ["route"],
            registry=r,
        )
        self.breaker_state = Gauge(
            "spillover_breaker_state",
            "Circuit state per target as this replica last saw it: 0 closed, 1 half-open, 2 open.",
            ["provider", "model"],
            registry=r,
        )
        self.faults_injected = Counter(
            "spillover_faults_injected",
            "Faults injected by drills, by kind and provider.",
            ["kind", "provider"],
            registry=r,
        )

    def _caches_keys_and_forecasts(self, r: CollectorRegistry) -> None:
        """The response cache, the keyring and the pools' forecast."""
        self.answer_cache = Counter(
            "spillover_response_cache_requests",
            "Requests on routes with a response cache, by what it did: hit, miss (asked the "
            "upstream, then stored), bypass (not cacheable or Cache-Control: no-store), refresh "
            "(Cache-Control: no-cache).",
            ["route", "team", "result"],
            registry=r,
        )
        self.answer_cache_saved = Counter(
            "spillover_response_cache_saved_usd",
            "What the answers served from the response cache had cost when they were stored.",
            ["route", "team"],
            registry=r,
        )
        self.pool_desired_replicas = Gauge(
            "spillover_pool_desired_replicas",
            "Replicas a pool should have one lead time from now, on its cheapest GPU type for "
            "the forecast (reason: forecast, or warm_floor when the floor binds): what an "
            "autoscaler acts on (deploy/kubernetes/components/vllm-pool).",
            ["pool", "gpu", "reason"],
            registry=r,
        )
        self.pool_forecast = Gauge(
            "spillover_pool_forecast",
            "The pool's forecast p99 one lead time from now, by what (kv_tokens, tokens_per_s, "
            "concurrency).",
            ["pool", "what"],
            registry=r,
        )
        self.pool_forecast_error = Gauge(
            "spillover_pool_forecast_error_ratio",
            "The forecast's error on the last day, held out: fitted without it, the mean "
            "absolute error of each hour's peak KV tokens in flight (0.15 is 15 %). Absent "
            "until the ledger holds a week and a day.",
            ["pool"],
            registry=r,
        )
        self.answer_cache_bytes = Gauge(
            "spillover_response_cache_bytes",
            "Bytes of answers the response cache holds in this process (memory backend).",
            registry=r,
        )
        self.keyring_keys = Gauge(
            "spillover_keyring_keys",
            "Stored secrets this process authenticates (keys kept as data, not revoked; a "
            "rotated key's old secret counts while its grace lasts).",
            registry=r,
        )
        self.keyring_version = Gauge(
            "spillover_keyring_version",
            "The version of the keyring this process serves: equal on every replica once a "
            "change has reached them all.",
            registry=r,
        )
        self.keyring_stale = Gauge(
            "spillover_keyring_stale_seconds",
            "How long the database has not answered this process's keyring checks (0 while it "
            "does); meanwhile it serves the last set it loaded.",
            registry=r,
        )

    def _money(self, r: CollectorRegistry) -> None:
        """Cost, prompt-cache savings and budgets."""
        self.cost_usd = Counter(
            "spillover_cost_usd",
            "Spend in USD by team, route and target (from the ledger's integer micro-dollars).",
            ["team", "route", "provider", "model"],
            registry=r,
        )
        self.cost_unknown = Counter(
            "spillover_cost_unknown",
            "Requests served by a model with no known price (priced 'unknown', never $0).",
            ["provider", "model"],
            registry=r,
        )
        self.cache_saved_usd = Counter(
            "spillover_prompt_cache_saved_usd",
            "What cached input tokens saved against the full input price.",
            ["route", "provider", "model"],
            registry=r,
        )
        self.cache_write_premium_usd = Counter(
            "spillover_prompt_cache_write_premium_usd",
            "What cache writes cost above the full input price (Anthropic: 25% or 100%).",
            ["route", "provider", "model"],
            registry=r,
        )
        self.budget_rejections = Counter(
            "spillover_budget_rejections",
            "Requests refused because a hard budget was spent, by scope (key, team).",
            ["scope"],
            registry=r,
        )
        self.budget_reserved = Gauge(
            "spillover_budget_reserved_usd",
            "The reservation backlog: money reserved by requests in flight here, not yet "
            "settled to their real cost.",
            registry=r,
        )
        self.budget_remaining = Gauge(
            "spillover_budget_remaining_usd",
            "What is left of a budget in its current period (negative once overspent).",
            ["scope", "owner", "period"],
            registry=r,
        )

    def _ledger(self, r: CollectorRegistry) -> None:
        """The ledger's journal and database."""
        self.ledger_queue = Gauge(
            "spillover_ledger_queue_depth",
            "Ledger rows kept (journaled) but not yet in the database.",
            registry=r,
        )
        self.ledger_spooled = Gauge(
            "spillover_ledger_spooled_rows",
            "Ledger rows waiting in the journal because the database is unreachable.",
            registry=r,
        )
        self.ledger_journal_bytes = Gauge(
            "spillover_ledger_journal_bytes",
            "Bytes of ledger rows in the journal not yet in the database.",
            registry=r,
        )
        self.ledger_journal_max_bytes = Gauge(
            "spillover_ledger_journal_max_bytes",
            "The journal's bound (ledger.journal_max_bytes); past it requests get 503.",
            registry=r,
        )
        self.ledger_lost = Gauge(
            "spillover_ledger_rows_lost",
            "Rows kept nowhere since start (journal full or failing and the memory overflow "
            "full): only requests refused before admission; admitted ones get 503 instead.",
            registry=r,
        )
        self.ledger_quarantined = Gauge(
            "spillover_ledger_quarantined_rows",
            "Rows the ledger database refused since start, set aside in the journal folder's "
            "quarantine.jsonl (and tried again at the next start): alert on any.",
            registry=r,
        )
        self.ledger_errors = Gauge(
            "spillover_ledger_errors",
            "Ledger writer and journal failures since start (each logged, then retried).",
            registry=r,
        )
        self.ledger_up = Gauge(
            "spillover_ledger_database_up",
            "1 while the ledger database accepts writes.",
            registry=r,
        )

    def _shared_state(self, r: CollectorRegistry) -> None:
        """Limits and the shared state behind them."""
        self.state_backend_up = Gauge(
            "spillover_state_backend_up",
            "1 while the shared state backend (Redis) answers; 0 while routing runs on "
            "local state.",
            registry=r,
        )
        self.limits_shared = Gauge(
            "spillover_limits_shared",
            "1 while limits are counted in Redis for every replica; 0 while each replica "
            "enforces its share (limit / replicas).",
            registry=r,
        )
        self.limit_rejections = Counter(
            "spillover_limit_rejections",
            "Requests refused by a gateway-side limit, by scope (key, team, route) and kind "
            "(requests, tokens, concurrent).",
            ["scope", "kind"],
            registry=r,
        )

    def _config(self, r: CollectorRegistry) -> None:
        """The config being served and its reloads."""
        self.config_loaded = Gauge(
            "spillover_config_loaded_timestamp_seconds",
            "When the serving config was loaded.",
            registry=r,
        )
        self.routes = Gauge(
            "spillover_route_usable_targets",
            "Usable targets per route (readiness).",
            ["route"],
            registry=r,
        )
        self.config_reloads = Counter(
            "spillover_config_reloads",
            "Config reloads by trigger (sighup, file_changed, admin_api) and outcome.",
            ["trigger", "outcome"],
            registry=r,
        )
        self.config_reload_ok = Gauge(
            "spillover_config_last_reload_ok",
            "1 when the last reload (or the start) succeeded; 0 while a rejected file waits.",
            registry=r,
        )

    def child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        bound = self._children.get(key)
        if bound is None:
            bound = metric.labels(*labels)
            self._children[key] = bound
        return bound


def _task_count() -> float:
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # scraped outside the event loop
        return 0.0
