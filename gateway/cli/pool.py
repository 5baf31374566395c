"""The pool's commands: `spillover sim-vllm` and `spillover pool launch`."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True, soft_wrap=True)
pool_app = typer.Typer(no_args_is_help=True, help="The self-hosted vLLM pool.")


def sim_vllm(
    port: Annotated[int, typer.Option(help="The first replica's port.")] = 8000,
    host: str = "127.0.0.1",
    model: Annotated[str, typer.Option(help="The served model name.")] = "tiny-llama",
    replicas: Annotated[int, typer.Option(help="Replicas on consecutive ports.")] = 1,
    kv_blocks: Annotated[int, typer.Option(help="KV cache size in blocks.")] = 64,
    block_size: Annotated[int, typer.Option(help="Tokens per KV block.")] = 128,
    max_num_seqs: int = 8,
    max_num_batched_tokens: int = 2048,
    max_model_len: int = 2048,
    step_base_ms: Annotated[float, typer.Option(help="A decode step, one sequence.")] = 2.5,
    per_seq_ms: Annotated[float, typer.Option(help="Each further sequence in a step.")] = 0.3,
    prefill_tokens_per_s: float = 60_000.0,
    api_overhead_ms: Annotated[
        float, typer.Option(help="Per request, before the engine (template, tokenise).")
    ] = 0.0,
    spec_tokens: Annotated[int, typer.Option(help="Speculative tokens per step.")] = 0,
    spec_accept: float = 0.7,
    load_s: Annotated[float, typer.Option(help="Seconds /health answers 503 (loading).")] = 0.0,
    warmup_ms: Annotated[float, typer.Option(help="Extra time of the first request.")] = 0.0,
    seed: int = 0,
) -> None:
    """A vLLM-compatible simulator: continuous batching, a block KV cache with prefix
    caching, preemption, and vLLM's /metrics names."""
    from fallback_engine.sim.engine import SimParams
    from fallback_engine.sim.server import serve

    params = SimParams(
        kv_blocks=kv_blocks,
        block_size=block_size,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        max_model_len=max_model_len,
        step_base_ms=step_base_ms,
        per_seq_ms=per_seq_ms,
        prefill_tokens_per_s=prefill_tokens_per_s,
        api_overhead_ms=api_overhead_ms,
        spec_tokens=spec_tokens,
        spec_accept=spec_accept,
        seed=seed,
    )
    ports = [port + i for i in range(replicas)]
    urls = ", ".join(f"http://{host}:{p}" for p in ports)
    console.print(f"simulated vLLM ({model}) on {urls}", highlight=False)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(host, ports, model, params, load_s, warmup_ms))


@pool_app.command("launch")
def launch(
    config: Annotated[Path, typer.Option("--config", "-c", help="The YAML config.")],
    provider: Annotated[
        str | None, typer.Option(help="The vllm_pool provider (default: every one with launch).")
    ] = None,
    run_dir: Annotated[Path, typer.Option(help="Where PID files and vLLM logs go.")] = Path(
        ".spillover"
    ),
    rehearse_from: Annotated[
        datetime | None,
        typer.Option(
            help="Rehearse the schedule: start its clock at this past UTC time (the ledger "
            "before it is the history), with --time-scale to run a day in minutes."
        ),
    ] = None,
    time_scale: Annotated[
        float, typer.Option(min=1, max=100_000, help="Schedule seconds per real second.")
    ] = 1.0,
) -> None:
    """Start and watch local `vllm serve` processes for the pools that have a `launch`
    section: startup timeouts that allow for model load, warm-up before a replica is listed,
    restarts with backoff, clean stop; with `launch.scale: schedule`, as many as the forecast
    needs one lead time ahead, draining a replica before it stops."""
    from fallback_engine.autoscale import Clock, Planner
    from fallback_engine.launch import launchable, scheduled, supervise_pools
    from gateway.cli.common import load_or_exit

    loaded = load_or_exit(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    start = None
    if rehearse_from is not None:
        start = rehearse_from.replace(tzinfo=rehearse_from.tzinfo or UTC).timestamp()
    try:
        pools = launchable(loaded, provider)
        planners: dict[str, Planner] = {}
        if scheduled(pools):
            from gateway.accounting.pool_forecast import LedgerPlanner

            for name in scheduled(pools):
                planners[name] = LedgerPlanner(loaded.ledger.url, name, dict(pools)[name])
        clock = Clock(start, time_scale)
        asyncio.run(supervise_pools(pools, console, run_dir, planners, clock))
    except KeyboardInterrupt:
        pass
    except ValueError as exc:
        console.print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
