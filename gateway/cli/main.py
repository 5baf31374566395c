"""The `spillover` command."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from policies.loader import ConfigError, load_config
from policies.schema import GatewayConfig

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Spillover: a reliability gateway for LLM APIs.",
)
console = Console(stderr=True, soft_wrap=True)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # One line per health check or scrape would drown the log; failures are logged by us.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def load_or_exit(path: Path) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            console.print(f"[red]error[/red] {issue}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        console.print(f"[red]error[/red] cannot read {path}: {exc.strerror}")
        raise typer.Exit(1) from None


@app.command("check-config")
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


@app.command()
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="The YAML config.")],
    host: Annotated[str | None, typer.Option(help="Overrides server.host.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides server.port.")] = None,
    workers: Annotated[int | None, typer.Option(help="Overrides server.workers.")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Run the gateway."""
    import uvicorn

    from gateway.http.app import CONFIG_ENV
    from gateway.http.head_limits import BoundedHttpToolsProtocol

    _setup_logging(log_level)
    loaded = load_or_exit(config)
    os.environ[CONFIG_ENV] = str(config.resolve())
    uvicorn.run(
        "gateway.http.app:app_from_env",
        factory=True,
        host=host or loaded.server.host,
        port=port or loaded.server.port,
        workers=workers or loaded.server.workers,
        loop="uvloop",
        http=BoundedHttpToolsProtocol,
        h11_max_incomplete_event_size=loaded.server.max_header_bytes,
        lifespan="on",
        access_log=False,
        log_level=log_level,
        timeout_graceful_shutdown=int(loaded.server.graceful_shutdown_s),
        timeout_keep_alive=int(loaded.server.keep_alive_s),
        server_header=False,
    )


@app.command("mock-provider")
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


@app.command()
def costs(
    config: Annotated[Path, typer.Option("--config", "-c", help="The YAML config.")],
    since: Annotated[str, typer.Option(help="30d, 12h, or an ISO date.")] = "30d",
    until: Annotated[str | None, typer.Option(help="30d, 12h, or an ISO date.")] = None,
    by: Annotated[
        str, typer.Option(help="Comma list of team,key,route,provider,model,day.")
    ] = "team,model",
    format: Annotated[str, typer.Option(help="table, csv, json, markdown or html.")] = "table",
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Spend, tokens, cache savings and fallback share from the ledger."""
    import asyncio
    import time

    from rich.progress import Progress

    from gateway.accounting import report_render as render
    from gateway.accounting.pricing import PriceTable
    from gateway.accounting.reports import parse_when, spend
    from gateway.metrics import GatewayMetrics
    from gateway.pipeline.account import Accountant

    loaded = load_or_exit(config)
    formats = ("table", "csv", "json", "markdown", "html")
    if format not in formats:
        raise typer.BadParameter(f"--format must be one of {', '.join(formats)}")
    dims = [d.strip() for d in by.split(",") if d.strip()]
    accountant = Accountant(GatewayMetrics(), PriceTable.load({}))
    accountant.configure(loaded)
    kinds: dict[str, str] = {name: p.kind for name, p in loaded.providers.items()}
    now = time.time()
    window = (parse_when(since, now), parse_when(until, now))

    def query(group: list[str], progress: Any = None) -> Any:
        return asyncio.run(
            spend(loaded.ledger.url, group, *window, accountant.prices, kinds, progress)
        )

    with Progress(transient=True, console=console) as bar:
        task = bar.add_task("reading the ledger", total=None)
        try:
            rows = query(dims, lambda n: bar.update(task, completed=n))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        if format == "html":
            bar.update(task, description="drawing charts")
            text = render.as_html(
                rows, dims, query(["day", "model"]), query(["provider", "model"]), "Spillover spend"
            )
    if format == "table":
        # Off a terminal (a pipe, a file) Rich would squeeze the table into 80 columns.
        wide = out is not None or not sys.stdout.isatty()
        target = Console(file=out.open("w") if out else None, width=220 if wide else None)
        target.print(render.as_table(rows, dims))
        return
    if format != "html":
        text = {"csv": render.as_csv, "json": render.as_json, "markdown": render.as_markdown}[
            format
        ](rows, dims)
    if out:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}", highlight=False)
    else:
        sys.stdout.write(text)


def demo_config_path() -> Path:
    return Path(str(resources.files("config").joinpath("demo.yaml")))


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="The gateway's port.")] = 4000,
    openai_port: int = 9001,
    anthropic_port: int = 9002,
    pool_port: Annotated[int, typer.Option(help="The first of two sim-vllm replicas.")] = 9003,
) -> None:
    """The embedded demo: two mock upstreams, a simulated vLLM pool and the gateway on
    config/demo.yaml."""
    from gateway.cli.probe import wait_ready

    env = {
        **os.environ,
        "SPILLOVER_PORT": str(port),
        "MOCK_OPENAI_PORT": str(openai_port),
        "MOCK_ANTHROPIC_PORT": str(anthropic_port),
        "SIM_VLLM_PORT": str(pool_port),
        "SIM_VLLM_PORT_2": str(pool_port + 1),
    }
    me = [sys.executable, "-m", "gateway"]
    commands = [
        [
            *me,
            "mock-provider",
            "--wire",
            "openai",
            "--port",
            str(openai_port),
            "--tokens-per-s",
            "200",
        ],
        [
            *me,
            "mock-provider",
            "--wire",
            "anthropic",
            "--port",
            str(anthropic_port),
            "--tokens-per-s",
            "200",
        ],
        [
            *me,
            "sim-vllm",
            "--port",
            str(pool_port),
            "--replicas",
            "2",
            "--model",
            "llama-3.1-8b",
            "--step-base-ms",
            "10",
        ],
        [*me, "serve", "--config", str(demo_config_path()), "--log-level", "warning"],
    ]
    children = [subprocess.Popen(c, env=env) for c in commands]

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()

    def on_term(*_: object) -> None:
        stop()
        sys.exit(0)

    # Installed explicitly: a parent that ignores SIGINT would otherwise make Ctrl-C a no-op.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    base = f"http://127.0.0.1:{port}"
    if not wait_ready(
        f"{base}/health/ready", 30, alive=lambda: all(c.poll() is None for c in children)
    ):
        stop()
        console.print(
            "[red]the demo did not come up: a process exited or 30 s passed "
            "(is a port taken?)[/red]"
        )
        raise typer.Exit(1)
    key = os.environ.get("SPILLOVER_DEMO_KEY", "sk-spillover-demo")
    Console(soft_wrap=True).print(
        f"""
[bold green]Spillover demo is up.[/bold green]
base URL: [bold]{base}/v1[/bold]   key: [bold]{key}[/bold]
routes: gpt-4o (mock OpenAI, then mock Anthropic, then the simulated vLLM pool),
        llama-3.1-8b (the pool first), claude-sonnet-4-5, text-embedding-3-small

  curl {base}/v1/chat/completions -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"model": "gpt-4o", "messages": [{{"role": "user", "content": "hi"}}]}}'

  from openai import OpenAI
  client = OpenAI(base_url="{base}/v1", api_key="{key}")
  print(client.chat.completions.create(model="gpt-4o",
        messages=[{{"role": "user", "content": "hi"}}]).choices[0].message.content)

  Make the primary fail and watch the fallback answer (x-spillover-provider: claude):
  curl -X POST http://127.0.0.1:{openai_port}/_mock/config \\
       -d '{{"error_rate": 1, "error_status": 503}}'

metrics: {base}/metrics   readiness: {base}/health/ready   Ctrl-C stops everything.
""",
        highlight=False,
    )
    sys.stdout.flush()
    try:
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        console.print("[red]a demo process exited; stopping the rest[/red]")
    except KeyboardInterrupt:
        pass
    finally:
        stop()


def main() -> None:
    from gateway.cli.capacity import plan
    from gateway.cli.drill import drill_app
    from gateway.cli.pool import pool_app, sim_vllm

    app.command("sim-vllm")(sim_vllm)
    app.command("plan")(plan)
    app.add_typer(pool_app, name="pool")
    app.add_typer(drill_app, name="drill")
    app()


if __name__ == "__main__":
    main()
