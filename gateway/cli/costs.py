"""`spillover costs`: the cost report from the ledger."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from gateway.cli.common import console, load_or_exit


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
    from gateway.accounting.idle import pool_periods
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
    now = time.time()
    window = (parse_when(since, now), parse_when(until, now))

    def query(group: list[str], progress: Any = None) -> Any:
        return asyncio.run(spend(loaded.ledger.url, group, *window, accountant.prices, progress))

    with Progress(transient=True, console=console) as bar:
        task = bar.add_task("reading the ledger", total=None)
        try:
            rows = query(dims, lambda n: bar.update(task, completed=n))
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        if format == "html":
            bar.update(task, description="drawing charts")
            try:
                text = render.as_html(
                    rows,
                    dims,
                    query(["day", "model"]),
                    query(["provider", "model"]),
                    "Spillover spend",
                )
            except ValueError as exc:
                raise typer.BadParameter(str(exc)) from None
    # The pools' idle cost needs a period with a start: `--since`, never "everything".
    periods = (
        pool_periods(loaded, query(["provider"]), window[0], window[1] or now)
        if window[0] is not None and format in ("table", "markdown")
        else []
    )
    if format == "table":
        # Off a terminal (a pipe, a file) Rich would squeeze the table into 80 columns.
        wide = out is not None or not sys.stdout.isatty()
        target = Console(file=out.open("w") if out else None, width=220 if wide else None)
        target.print(render.as_table(rows, dims))
        if periods:
            target.print(render.pools_table(periods))
        return
    if format != "html":
        text = {"csv": render.as_csv, "json": render.as_json, "markdown": render.as_markdown}[
            format
        ](rows, dims)
        if periods:
            text += "\n" + render.pools_markdown(periods)
    if out:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}", highlight=False)
    else:
        sys.stdout.write(text)
