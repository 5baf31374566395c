"""A replica's `/metrics`, parsed with prometheus-client's text parser into one snapshot, and
the rates between two snapshots (tokens/s, prefix-cache hit rate, speculative-decoding
acceptance, mean TTFT and time per output token over the interval)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

# Gauges and counters we read, summed over engines (data-parallel replicas have several).
_SCALARS = {
    "vllm:kv_cache_usage_perc": "kv_usage",
    "vllm:num_requests_running": "running",
    "vllm:num_requests_waiting": "waiting",
    "vllm:prefix_cache_queries": "prefix_queries",
    "vllm:prefix_cache_hits": "prefix_hits",
    "vllm:num_preemptions": "preemptions",
    "vllm:prompt_tokens": "prompt_tokens",
    "vllm:generation_tokens": "generation_tokens",
    "vllm:spec_decode_num_drafts": "spec_drafts",
    "vllm:spec_decode_num_draft_tokens": "spec_draft_tokens",
    "vllm:spec_decode_num_accepted_tokens": "spec_accepted_tokens",
}
_HISTOGRAMS = {
    "vllm:time_to_first_token_seconds": "ttft",
    "vllm:inter_token_latency_seconds": "itl",
    "vllm:request_time_per_output_token_seconds": "tpot",
    "vllm:e2e_request_latency_seconds": "e2e",
}


@dataclass(slots=True)
class Snapshot:
    at: float
    kv_usage: float = 0.0
    running: float = 0.0
    waiting: float = 0.0
    prefix_queries: float = 0.0
    prefix_hits: float = 0.0
    preemptions: float = 0.0
    prompt_tokens: float = 0.0
    generation_tokens: float = 0.0
    spec_drafts: float | None = None
    spec_draft_tokens: float | None = None
    spec_accepted_tokens: float | None = None
    block_size: int | None = None
    num_blocks: int | None = None
    # name → (sum, count) of each latency histogram
    histograms: dict[str, tuple[float, float]] = field(default_factory=dict)
    engines: int = 0

    @property
    def kv_capacity_tokens(self) -> int | None:
        if self.block_size and self.num_blocks:
            return self.block_size * self.num_blocks
        return None


def parse(text: str, at: float) -> Snapshot:
    snap = Snapshot(at=at)
    kv_values: list[float] = []
    sums: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "vllm:cache_config_info":
            for sample in family.samples:
                labels = sample.labels
                if labels.get("block_size", "").isdigit():
                    snap.block_size = int(labels["block_size"])
                if labels.get("num_gpu_blocks", "").isdigit():
                    snap.num_blocks = int(labels["num_gpu_blocks"])
            continue
        attr = _SCALARS.get(family.name)
        if attr is not None:
            for sample in family.samples:
                if sample.name.endswith("_created"):
                    continue
                if attr == "kv_usage":
                    kv_values.append(sample.value)
                else:
                    setattr(snap, attr, (getattr(snap, attr) or 0.0) + sample.value)
            continue
        hist = _HISTOGRAMS.get(family.name)
        if hist is not None:
            pair = sums.setdefault(hist, [0.0, 0.0])
            for sample in family.samples:
                if sample.name.endswith("_sum"):
                    pair[0] += sample.value
                elif sample.name.endswith("_count"):
                    pair[1] += sample.value
    if kv_values:
        # Engines of one replica have caches of their own: the fullest one binds.
        snap.kv_usage = max(kv_values)
        snap.engines = len(kv_values)
    snap.histograms = {name: (s, c) for name, (s, c) in sums.items()}
    return snap


@dataclass(frozen=True, slots=True)
class Rates:
    prompt_tokens_per_s: float = 0.0
    generation_tokens_per_s: float = 0.0
    prefix_hit_ratio: float | None = None
    spec_acceptance: float | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    itl_s: float | None = None


def _mean(old: Snapshot, new: Snapshot, name: str) -> float | None:
    s0, c0 = old.histograms.get(name, (0.0, 0.0))
    s1, c1 = new.histograms.get(name, (0.0, 0.0))
    return (s1 - s0) / (c1 - c0) if c1 > c0 else None


def rates(old: Snapshot, new: Snapshot) -> Rates:
    """Rates over the interval between two snapshots; a counter that went down means the
    replica restarted, so the new values count from zero."""
    span = new.at - old.at
    if span <= 0:
        return Rates()
    if new.prompt_tokens < old.prompt_tokens or new.prefix_queries < old.prefix_queries:
        old = Snapshot(at=old.at)
    queries = new.prefix_queries - old.prefix_queries
    drafts = (new.spec_draft_tokens or 0.0) - (old.spec_draft_tokens or 0.0)
    accepted = (new.spec_accepted_tokens or 0.0) - (old.spec_accepted_tokens or 0.0)
    return Rates(
        prompt_tokens_per_s=(new.prompt_tokens - old.prompt_tokens) / span,
        generation_tokens_per_s=(new.generation_tokens - old.generation_tokens) / span,
        prefix_hit_ratio=(new.prefix_hits - old.prefix_hits) / queries if queries > 0 else None,
        spec_acceptance=accepted / drafts if drafts > 0 else None,
        ttft_s=_mean(old, new, "ttft"),
        tpot_s=_mean(old, new, "tpot"),
        itl_s=_mean(old, new, "itl"),
    )
