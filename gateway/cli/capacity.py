"""`spillover plan`: size the self-hosted pool from the ledger's request distribution."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from policies.pool import VllmPoolProvider

if TYPE_CHECKING:
    from gateway.accounting.capacity import Demand, Percentiles, Sizing

console = Console(soft_wrap=True)


def plan(
    config: Annotated[Path, typer.Option("--config", "-c", help="The YAML config.")],
    since: Annotated[
        str | None, typer.Option(help="7d, 12h, or an ISO date (default 7d; 28d with --schedule).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="7d, 12h, or an ISO date.")] = None,
    route: Annotated[
        list[str] | None, typer.Option(help="Only this route's traffic (repeatable).")
    ] = None,
    provider: Annotated[
        list[str] | None, typer.Option(help="Only traffic served by this provider (repeatable).")
    ] = None,
    pool: Annotated[
        str | None,
        typer.Option(help="A vllm_pool provider: its max_kv_usage and gpu_cost_per_hour apply."),
    ] = None,
    kv_tokens_per_replica: Annotated[
        int | None,
        typer.Option(
            help="One replica's KV cache in tokens (vLLM logs it at start: 'KV cache size: N "
            "tokens'; or num_gpu_blocks x block_size from vllm:cache_config_info).",
            min=1,
        ),
    ] = None,
    tokens_per_s_per_replica: Annotated[
        float | None,
        typer.Option(help="Prompt + output tokens/s one replica sustains (bench it).", min=1),
    ] = None,
    headroom: Annotated[float, typer.Option(help="Spare capacity over the p99 need.")] = 0.2,
    format: Annotated[str, typer.Option(help="table or json.")] = "table",
    schedule: Annotated[
        bool,
        typer.Option(
            "--schedule",
            help="Forecast the pool's demand (--pool, its `capacity:`) and plan, per hour, the "
            "cheapest GPU type and replicas; with --since at least a week and a day.",
        ),
    ] = False,
    days: Annotated[int, typer.Option(help="--schedule: how many days ahead.", min=1)] = 1,
) -> None:
    """Request sizes (p50/p95/p99), concurrency and KV tokens in flight over time, tokens/s —
    and, given a replica's KV size, the replicas a pool needs at p99 (not at the average)."""
    from gateway.accounting.capacity import read_demand, size  # the SQL toolkit: only here
    from gateway.accounting.reports import parse_when
    from gateway.cli.common import load_or_exit

    if format not in ("table", "json"):
        raise typer.BadParameter("--format must be table or json")
    loaded = load_or_exit(config)
    pool_config = _pool_config(loaded.providers, pool, config)
    now = time.time()
    if schedule:
        if pool is None or pool_config is None:
            raise typer.BadParameter("--schedule needs --pool (a vllm_pool provider)")
        window = parse_when(since or "28d", now) or now - 28 * 86_400
        _schedule(loaded.ledger.url, pool, pool_config, window, days, format == "json")
        return
    need = asyncio.run(
        read_demand(
            loaded.ledger.url,
            parse_when(since or "7d", now),
            parse_when(until, now),
            route or (),
            provider or (),
        )
    )
    sizing: Sizing | None = None
    if kv_tokens_per_replica is not None and need.requests:
        sizing = size(
            need,
            kv_tokens_per_replica,
            pool_config.admission.max_kv_usage if pool_config else 0.92,
            tokens_per_s_per_replica,
            headroom,
            pool_config.gpu_cost_per_hour if pool_config else None,
        )
    _print(need, sizing, pool_config, as_json=format == "json")


def _pool_config(
    providers: Mapping[str, object], pool: str | None, config: Path
) -> VllmPoolProvider | None:
    """The `--pool` provider's config, which must be a vllm_pool (None without --pool)."""
    if pool is None:
        return None
    found = providers.get(pool)
    if not isinstance(found, VllmPoolProvider):
        raise typer.BadParameter(f"{pool!r} is not a vllm_pool provider in {config}")
    return found


def _print(
    need: Demand, sizing: Sizing | None, pool_config: VllmPoolProvider | None, as_json: bool
) -> None:
    if as_json:
        out = {
            "demand": {**asdict(need), "kv_tokens_by_averages": need.kv_tokens_by_averages},
            "sizing": sizing.as_dict() if sizing else None,
        }
        print(json.dumps(out, indent=2))
    else:
        _show(need, sizing, pool_config)


def _schedule(
    url: str, pool: str, config: VllmPoolProvider, since: float, days: int, as_json: bool
) -> None:
    from gateway.cli.schedule import schedule  # the forecast and the SQL toolkit: only here

    try:
        schedule(url, pool, config, since, days, as_json)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _show(need: Demand, sizing: Sizing | None, pool: VllmPoolProvider | None) -> None:
    if not need.requests:
        console.print("no served requests in the ledger for this window")
        return
    span = f"{need.span_s / 3600:.1f} h" if need.span_s >= 3600 else f"{need.span_s:.0f} s"
    console.print(f"{need.requests:,} served requests over {span}")
    table = Table("per request / over time", "p50", "p95", "p99", "max", "mean")

    def row(name: str, p: Percentiles, digits: int = 0) -> None:
        cells = (f"{v:,.{digits}f}" for v in (p.p50, p.p95, p.p99, p.max, p.mean))
        table.add_row(name, *cells)

    row("prompt tokens", need.prompt_tokens)
    row("output tokens", need.output_tokens)
    row("prompt + output tokens", need.request_tokens)
    row("requests in flight", need.concurrency, 1)
    row("KV tokens in flight", need.kv_tokens)
    row("tokens/s (per minute)", need.tokens_per_s, 1)
    console.print(table)
    console.print(
        f"sized by averages (mean in flight x mean size): {need.kv_tokens_by_averages:,.0f} "
        f"KV tokens; the p99 in flight is {need.kv_tokens.p99:,.0f}"
    )
    if sizing is None:
        console.print("size a pool: --kv-tokens-per-replica (and --tokens-per-s-per-replica)")
        return
    sized = Table("pool", "replicas")
    sized.add_row("for the p99 KV tokens in flight", str(sizing.kv_bound_replicas))
    if sizing.throughput_bound_replicas is not None:
        sized.add_row("for the p99 tokens/s", str(sizing.throughput_bound_replicas))
    sized.add_row("[b]recommended (with headroom)[/b]", f"[b]{sizing.replicas}[/b]")
    sized.add_row("min_warm_replicas (the p50 need, with headroom)", str(sizing.min_warm_replicas))
    sized.add_row("what averages would have said", str(sizing.by_averages_replicas))
    if sizing.usd_per_hour is not None:
        sized.add_row("GPU cost at the recommendation", f"${sizing.usd_per_hour:,.2f}/h")
    console.print(sized)
    if pool is not None and pool.min_warm_replicas < sizing.min_warm_replicas:
        console.print(
            f"[yellow]min_warm_replicas is {pool.min_warm_replicas} in the config; the ledger "
            f"suggests {sizing.min_warm_replicas}[/yellow]"
        )
