"""`spillover drill run | list | demo`: failover drills from scenario files."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True, soft_wrap=True)
drill_app = typer.Typer(no_args_is_help=True, help="Failover drills: inject faults, check SLOs.")


def _run(
    scenario_name: str, gateway: str, admin_key: str, key: str, report: Path | None, scale: float
) -> bool:
    from gateway.drill import scenario as scenarios
    from gateway.drill.runner import DrillRun, Gateway, drive
    from gateway.drill.verdict import checks, measures, write_report

    drill = scenarios.load(scenario_name)
    if scale != 1.0:
        drill = drill.scaled(scale)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(f"drill {drill.name}", total=drill.traffic.duration_s, status="")

        def progress(elapsed: float, run: DrillRun) -> None:
            done = len(run.outcomes)
            errors = sum(1 for o in run.outcomes if o.error)
            faults = sum(1 for w in run.windows if w.start <= elapsed < w.end)
            bar.update(
                task,
                completed=min(elapsed, drill.traffic.duration_s),
                status=f"{done} requests, {errors} errors, {faults} faults active",
            )

        run = asyncio.run(drive(drill, Gateway(gateway, admin_key, key), progress))
    results = checks(run)
    m = measures(run)
    table = Table(title=f"drill {drill.name}")
    for column in ("SLO", "measured", "limit", "verdict"):
        table.add_column(column)
    for c in results:
        table.add_row(
            c.name,
            f"{c.measured if c.measured is None else round(c.measured, 4)}{c.unit}",
            f"{c.limit}{c.unit}",
            "[green]pass" if c.ok else "[red]FAIL",
        )
    Console(soft_wrap=True).print(table)
    Console(soft_wrap=True).print(
        f"detection time {m['detection_time_s']} s, failover time {m['failover_time_s']} s, "
        f"{int(m['requests'] or 0)} requests",
        highlight=False,
    )
    if report is not None:
        for path in write_report(run, report):
            console.print(f"wrote {path}", highlight=False)
    return all(c.ok for c in results)


@drill_app.command("run")
def run(
    scenario: Annotated[str, typer.Argument(help="A shipped scenario's name or a YAML file.")],
    gateway: Annotated[str, typer.Option(help="The gateway's base URL.")] = "http://127.0.0.1:4000",
    admin_key: Annotated[str, typer.Option(envvar="SPILLOVER_ADMIN_KEY")] = "sk-spillover-admin",
    key: Annotated[str, typer.Option(help="A client key.", envvar="SPILLOVER_KEY")] = (
        "sk-spillover-demo"
    ),
    report: Annotated[Path | None, typer.Option(help="Write report.{md,json,html} here.")] = None,
    scale: Annotated[float, typer.Option(help="Run in this share of the scenario's time.")] = 1.0,
) -> None:
    """Drive the scenario's traffic, apply its faults, check its SLOs; exit 1 if one fails."""
    try:
        ok = _run(scenario, gateway, admin_key, key, report, scale)
    except (FileNotFoundError, RuntimeError, OSError) as exc:
        console.print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(2) from None
    raise typer.Exit(0 if ok else 1)


@drill_app.command("list")
def list_scenarios() -> None:
    """The shipped scenarios (config/drills/)."""
    from gateway.drill.scenario import shipped

    table = Table()
    table.add_column("scenario")
    table.add_column("what it does")
    for drill in shipped():
        table.add_row(drill.name, drill.description)
    Console(soft_wrap=True).print(table)


@drill_app.command("demo")
def demo(
    scenario: str = "provider-outage",
    report: Annotated[Path, typer.Option(help="Where the report goes.")] = Path("drill-report"),
    port: int = 4000,
) -> None:
    """Start the embedded demo (mock providers + simulated pool) and run a drill on it."""
    from gateway.cli.probe import wait_ready

    demo_proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        if not wait_ready(f"http://127.0.0.1:{port}/health/ready", 60):
            console.print("[red]the demo did not come up[/red]")
            raise typer.Exit(2)
        time.sleep(2)  # the simulated pool warms up
        ok = _run(
            scenario,
            f"http://127.0.0.1:{port}",
            "sk-spillover-admin",
            os.environ.get("SPILLOVER_DEMO_KEY", "sk-spillover-demo"),
            report,
            1.0,
        )
    finally:
        os.killpg(demo_proc.pid, signal.SIGINT)
        demo_proc.wait(30)
    raise typer.Exit(0 if ok else 1)
