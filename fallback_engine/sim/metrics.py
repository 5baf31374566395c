"""The simulator's `/metrics`, under the names vLLM 0.32 uses (labels `engine`, `model_name`)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fallback_engine.sim.engine import Observer, Sequence, SimEngine

_LATENCY_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0,
)  # fmt: skip


class _EngineState(Collector):
    """Gauges and counters read from the engine at scrape time."""

    def __init__(self, engine: SimEngine, model: str) -> None:
        self._engine = engine
        self._labels = {"engine": "0", "model_name": model}

    def _gauge(self, name: str, doc: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=list(self._labels))
        family.add_metric(list(self._labels.values()), value)
        return family

    def _counter(self, name: str, doc: str, value: float) -> CounterMetricFamily:
        family = CounterMetricFamily(name, doc, labels=list(self._labels))
        family.add_metric(list(self._labels.values()), value)
        return family

    def collect(self) -> list[Metric]:
        e, c = self._engine, self._engine.counters
        p = e.params
        info = GaugeMetricFamily(
            "vllm:cache_config_info",
            "Information of the LLMEngine CacheConfig",
            labels=["block_size", "num_gpu_blocks", "enable_prefix_caching", "engine"],
        )
        info.add_metric([str(p.block_size), str(p.kv_blocks), "True", "0"], 1.0)
        out: list[Metric] = [
            info,
            self._gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
                        e.kv_usage),
            self._gauge("vllm:num_requests_running", "Requests in model execution batches.",
                        len(e.running)),
            self._gauge("vllm:num_requests_waiting", "Requests waiting to be processed.",
                        len(e.waiting)),
            self._counter("vllm:prefix_cache_queries", "Prefix cache queries, in tokens.",
                          c.prefix_queries),
            self._counter("vllm:prefix_cache_hits", "Prefix cache hits, in tokens.",
                          c.prefix_hits),
            self._counter("vllm:num_preemptions", "Cumulative number of preemptions.",
                          c.preemptions),
            self._counter("vllm:prompt_tokens", "Number of prefill tokens processed.",
                          c.prompt_tokens),
            self._counter("vllm:generation_tokens", "Number of generation tokens processed.",
                          c.generation_tokens),
        ]  # fmt: skip
        if p.spec_tokens:
            out += [
                self._counter("vllm:spec_decode_num_drafts", "Number of spec decoding drafts.",
                              c.spec_drafts),
                self._counter("vllm:spec_decode_num_draft_tokens", "Number of draft tokens.",
                              c.spec_draft_tokens),
                self._counter("vllm:spec_decode_num_accepted_tokens", "Accepted tokens.",
                              c.spec_accepted_tokens),
            ]  # fmt: skip
        success = CounterMetricFamily(
            "vllm:request_success", "Count of successfully processed requests.",
            labels=[*self._labels, "finished_reason"],
        )  # fmt: skip
        for reason, count in c.finished.items():
            success.add_metric([*self._labels.values(), reason], count)
        out.append(success)
        return out


class SimMetrics(Observer):
    def __init__(self, engine: SimEngine, model: str) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_EngineState(engine, model))
        labels = ["engine", "model_name"]
        self._values = ("0", model)

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, labels, registry=self.registry, buckets=_LATENCY_BUCKETS)

        self.ttft = histogram("vllm:time_to_first_token_seconds", "Time to first token.")
        self.itl = histogram("vllm:inter_token_latency_seconds", "Inter-token latency.")
        self.tpot = histogram(
            "vllm:request_time_per_output_token_seconds", "Time per output token per request."
        )
        self.e2e = histogram("vllm:e2e_request_latency_seconds", "End to end request latency.")
        self.queue = histogram("vllm:request_queue_time_seconds", "Time spent waiting.")
        self.prompt_tokens = Histogram(
            "vllm:request_prompt_tokens", "Prompt tokens per request.", labels,
            registry=self.registry, buckets=(16, 64, 256, 1024, 4096, 16384, 65536),
        )  # fmt: skip
        self.generation_tokens = Histogram(
            "vllm:request_generation_tokens", "Generation tokens per request.", labels,
            registry=self.registry, buckets=(16, 64, 256, 1024, 4096, 16384),
        )  # fmt: skip
        self.http_requests = Counter(
            "spillover_sim_http_requests", "HTTP requests the simulator answered.",
            ["path", "status"], registry=self.registry,
        )  # fmt: skip
        self.loaded = Gauge(
            "spillover_sim_model_loaded", "1 once the simulated model is loaded.",
            registry=self.registry,
        )  # fmt: skip

    def scheduled(self, seq: Sequence) -> None:
        assert seq.scheduled_at is not None
        self.queue.labels(*self._values).observe(seq.scheduled_at - seq.arrived)

    def first_token(self, seq: Sequence) -> None:
        assert seq.first_token_at is not None
        self.ttft.labels(*self._values).observe(seq.first_token_at - seq.arrived)

    def inter_token(self, seconds: float) -> None:
        self.itl.labels(*self._values).observe(seconds)

    def finished(self, seq: Sequence) -> None:
        now = time.monotonic()
        self.e2e.labels(*self._values).observe(now - seq.arrived)
        self.prompt_tokens.labels(*self._values).observe(len(seq.prompt))
        self.generation_tokens.labels(*self._values).observe(seq.output)
        if seq.first_token_at is not None and seq.output > 1 and seq.last_token_at is not None:
            self.tpot.labels(*self._values).observe(
                (seq.last_token_at - seq.first_token_at) / (seq.output - 1)
            )

    def render(self) -> bytes:
        return generate_latest(self.registry)
