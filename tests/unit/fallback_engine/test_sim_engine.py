"""The simulator's engine on the event loop, and the scrape parser on real vLLM output."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fallback_engine.scrape import Snapshot, parse, rates
from fallback_engine.sim.engine import SimEngine, SimParams, tokenize
from fallback_engine.sim.metrics import SimMetrics

REAL_METRICS = Path(__file__).parents[2] / "fixtures" / "vllm" / "metrics-0.32.0.txt"


async def _drain(engine: SimEngine, prompt: list[int], max_tokens: int) -> int:
    seq = engine.submit(prompt, max_tokens)
    count = 0
    while await seq.tokens.get() is not None:
        count += 1
    return count


async def test_prefix_cache_hits_on_a_repeated_prefix_and_frees_blocks_after() -> None:
    engine = SimEngine(SimParams(kv_blocks=32, block_size=16, step_base_ms=0.1))
    runner = asyncio.create_task(engine.run())
    try:
        system = tokenize("You are a careful assistant. " * 20)  # 145 tokens: 9 full blocks
        assert await _drain(engine, system + tokenize("first"), 4) == 4
        assert engine.counters.prefix_hits == 0
        second = engine.submit(system + tokenize("second"), 4)
        while await second.tokens.get() is not None:
            pass
        assert second.cached_tokens == 9 * 16
        assert engine.counters.prefix_hits == 9 * 16
        assert engine.kv_usage == 0.0  # finished sequences keep cached blocks, not references
    finally:
        runner.cancel()


async def test_kv_pressure_queues_then_preempts_and_every_request_still_finishes() -> None:
    params = SimParams(kv_blocks=16, block_size=16, max_num_seqs=8, step_base_ms=0.1)
    engine = SimEngine(params)
    runner = asyncio.create_task(engine.run())
    try:
        prompts = [tokenize(f"request {i} " + "x" * 200) for i in range(6)]  # 4 blocks each
        jobs = [asyncio.create_task(_drain(engine, p, 60)) for p in prompts]
        await asyncio.sleep(0.005)
        assert engine.waiting, "16 blocks cannot hold six 4-block prompts at once"
        peak = 0.0
        while not all(j.done() for j in jobs):
            peak = max(peak, engine.kv_usage)
            await asyncio.sleep(0.001)
        assert [j.result() for j in jobs] == [60] * 6
        assert peak > 0.9
        assert engine.counters.preemptions > 0  # decodes outgrew the cache
        assert engine.counters.generation_tokens == 360
    finally:
        runner.cancel()


async def test_step_time_grows_with_the_tokens_in_the_step() -> None:
    engine = SimEngine(SimParams(step_base_ms=2.0, per_seq_ms=0.5, prefill_tokens_per_s=10_000))
    assert engine._step_seconds(0, 1) == 0.002
    assert engine._step_seconds(0, 5) == 0.004
    assert abs(engine._step_seconds(1_000, 1) - 0.102) < 1e-12


def test_the_parser_reads_real_vllm_output_and_the_simulator_writes_the_same_names() -> None:
    real = parse(REAL_METRICS.read_text(), at=10.0)
    assert (real.block_size, real.num_blocks, real.kv_capacity_tokens) == (128, 64, 8192)
    assert real.prefix_queries == 2250 and real.prefix_hits == 1280
    assert real.prompt_tokens == 2250 and real.generation_tokens == 43
    assert real.histograms["ttft"][1] == 5  # the five requests that made the fixture
    engine = SimEngine(SimParams())
    sim = parse(SimMetrics(engine, "m").render().decode(), at=0.0)
    assert sim.kv_capacity_tokens == 64 * 128
    assert set(sim.histograms) == set(real.histograms)


def test_rates_between_snapshots_and_a_restart() -> None:
    old = Snapshot(at=0.0, prompt_tokens=1_000, generation_tokens=100, prefix_queries=1_000,
                   prefix_hits=200, spec_draft_tokens=40, spec_accepted_tokens=10,
                   histograms={"ttft": (1.0, 10)})  # fmt: skip
    new = Snapshot(at=2.0, prompt_tokens=3_000, generation_tokens=500, prefix_queries=3_000,
                   prefix_hits=1_700, spec_draft_tokens=140, spec_accepted_tokens=80,
                   histograms={"ttft": (1.6, 14)})  # fmt: skip
    r = rates(old, new)
    assert (r.prompt_tokens_per_s, r.generation_tokens_per_s) == (1_000, 200)
    assert r.prefix_hit_ratio == 0.75 and r.spec_acceptance == 0.7
    assert r.ttft_s is not None and abs(r.ttft_s - 0.15) < 1e-9
    restarted = Snapshot(at=4.0, prompt_tokens=50, prefix_queries=50, prefix_hits=0)
    assert rates(new, restarted).prompt_tokens_per_s == 25  # 50 tokens counted from zero
