"""`spillover serve`, `check-config` and `mock-provider`: the long-running servers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.common import console, load_or_exit, setup_logging
from policies.schema import GatewayConfig


def check_config(
    file: Annotated[Path, typer.Argument(help="The YAML config to validate.")],
) -> None:
    """Validate a config file; print every problem as file:line:column and exit 1."""
    config = load_or_exit(file)
    console.print(
        f"[green]ok[/green] {file}: {len(config.providers)} providers, "
        f"{len(config.routes)} routes, {len(config.keys)} keys",
        highlight=False,
    )
    names = config.route_names.table()
    if names:
        console.print("model names that reach a route, in the order they are matched:")
        for name, route in names:
            console.print(f"  {name:<32} → {route}", highlight=False, markup=False)


def serve(
    config: Annotated[
        Path, typer.Option("--config", "-c", envvar="SPILLOVER_CONFIG", help="The YAML config.")
    ],
    host: Annotated[
        str | None, typer.Option(envvar="SPILLOVER_HOST", help="Overrides server.host.")
    ] = None,
    port: Annotated[
        int | None, typer.Option(envvar="SPILLOVER_PORT", help="Overrides server.port.")
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Overrides server.workers.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run the gateway."""
    from gateway.http import server

    setup_logging(log_level)
    loaded = load_or_exit(config)
    setup_logging(log_level, loaded.server.log_format)
    count = workers or loaded.server.workers
    if count > 1 and loaded.state.backend == "memory":
        logging.getLogger("spillover").warning(
            "server.workers: %d with state.backend: memory — each worker keeps its own "
            "breakers, limits and budget counters: limits admit up to %d times theirs and "
            "budgets can be overspent as much; use state.backend: redis to share them",
            count,
            count,
        )
    settings = loaded.server
    server.Launch(
        config=config,
        host=host or settings.host,
        port=port or settings.port,
        workers=count,
        log_level=log_level,
        max_header_bytes=settings.max_header_bytes,
        keep_alive_s=settings.keep_alive_s,
        graceful_shutdown_s=settings.graceful_shutdown_s,
        forwarded_allow_ips=",".join(settings.forwarded_allow_ips),
        heavy_lane_nice=settings.heavy_lane_nice if _needs_lane(loaded) else -1,
        lane_socket="",
    ).replace_process()  # the serving process, without the CLI's imports


def _needs_lane(config: GatewayConfig) -> bool:
    """A heavy lane when some request could be larger than its threshold — and no pool is
    configured: a pool's probing and warm-up belong to one process per replica of the
    gateway, and a lane of its own would warm every replica twice."""
    threshold = config.server.heavy_lane_bytes
    largest = max(config.server.max_body_bytes, config.responses.max_history_bytes)
    pooled = any(p.kind == "vllm_pool" for p in config.providers.values())
    if pooled and 0 < threshold < largest:
        logging.getLogger("spillover").warning(
            "no heavy lane: the config has a self-hosted pool (server.heavy_lane_bytes)"
        )
    return 0 < threshold < largest and not pooled


def mock_provider(
    wire: Annotated[str, typer.Option(help="openai or anthropic.")] = "openai",
    host: str = "127.0.0.1",
    port: int = 9001,
    latency_ms: Annotated[float, typer.Option(help="Delay before the answer.")] = 0.0,
    ttft_ms: Annotated[float, typer.Option(help="Streams: delay before the 1st event.")] = 0.0,
    tokens_per_s: Annotated[float, typer.Option(help="Streams: pacing; 0 = no pacing.")] = 0.0,
    output_tokens: int = 16,
    error_rate: Annotated[float, typer.Option(help="Share of requests that fail.")] = 0.0,
    error_status: Annotated[int, typer.Option(help="429, 500, 503, 529, …")] = 500,
    retry_after_s: float = 1.0,
    reset_rate: Annotated[float, typer.Option(help="Share whose connection resets.")] = 0.0,
    hang_rate: Annotated[float, typer.Option(help="Share that never get an answer.")] = 0.0,
    cut_after: Annotated[int, typer.Option(help="Streams: cut after N events.")] = 0,
    seed: int = 0,
) -> None:
    """A fake upstream speaking the OpenAI or Anthropic wire format, with fault knobs."""
    from gateway.mock.server import Knobs, run

    if wire not in ("openai", "anthropic"):
        raise typer.BadParameter("--wire must be openai or anthropic")
    knobs = Knobs(
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        tokens_per_s=tokens_per_s,
        output_tokens=output_tokens,
        error_rate=error_rate,
        error_status=error_status,
        retry_after_s=retry_after_s,
        reset_rate=reset_rate,
        hang_rate=hang_rate,
        cut_after=cut_after,
        seed=seed,
    )
    console.print(f"mock {wire} provider on http://{host}:{port}", highlight=False)
    run(wire, host, port, knobs)
