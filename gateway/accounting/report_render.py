"""Render cost reports: a Rich table, CSV, JSON, Markdown, or one self-contained HTML file
whose charts (matplotlib, embedded as PNG) need nothing else to open."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from rich.table import Table

from gateway.accounting.idle import PoolPeriod
from gateway.accounting.reports import SpendRow

_COLUMNS = (
    "requests",
    "spend_usd",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "cache_hit_ratio",
    "cache_savings_usd",
    "response_cache_hits",
    "response_cache_saved_usd",
    "fallback_share",
    "usd_per_mtok",
    "unpriced_requests",
)


def _flat(rows: list[SpendRow], by: list[str]) -> list[dict[str, Any]]:
    return [
        {
            **{d: r.group[d] for d in by},
            **{c: getattr(r, c) for c in _COLUMNS},
            "self_hosted": r.self_hosted,
        }
        for r in rows
    ]


def _fmt(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column.endswith("_usd") or column == "usd_per_mtok":
        return f"${value:,.6f}" if value < 1 else f"${value:,.2f}"
    if column in ("cache_hit_ratio", "fallback_share"):
        return f"{value:.1%}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def as_table(rows: list[SpendRow], by: list[str]) -> Table:
    table = Table(title="Spillover spend", show_lines=False)
    for column in (*by, *_COLUMNS):
        table.add_column(column.replace("_", " "), justify="left" if column in by else "right")
    for row in _flat(rows, by):
        table.add_row(*[row[d] for d in by], *[_fmt(c, row[c]) for c in _COLUMNS])
    return table


def as_csv(rows: list[SpendRow], by: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*by, *_COLUMNS, "self_hosted"])
    writer.writeheader()
    for row in _flat(rows, by):
        writer.writerow({**row, **{d: _text_cell(row[d]) for d in by}})
    return out.getvalue()


def _text_cell(value: str) -> str:
    """A name a spreadsheet would run as a formula (`=…`, `+…`, `-…`, `@…`) is quoted as
    text: key, team and route names come from configs, and a CSV is opened by people."""
    return "'" + value if len(value) > 1 and value[0] in "=+-@\t\r" else value


def as_json(rows: list[SpendRow], by: list[str]) -> str:
    return json.dumps({"by": by, "rows": [r.as_dict() for r in rows]}, indent=2)


def as_markdown(rows: list[SpendRow], by: list[str]) -> str:
    header = [h.replace("_", " ") for h in (*by, *_COLUMNS)]
    cells = [[*(r[d] for d in by), *(_fmt(c, r[c]) for c in _COLUMNS)] for r in _flat(rows, by)]
    return _markdown(header, cells)


def _markdown(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


_POOL_COLUMNS = ("pool", "replicas", "hours", "capacity $", "billed $", "idle $", "used")


def _pool_cells(period: PoolPeriod) -> list[str]:
    return [period.provider, str(period.replicas), f"{period.hours:,.2f}",
            f"{period.capacity_usd:,.4f}", f"{period.billed_usd:,.4f}",
            f"{period.idle_usd:,.4f}", f"{period.utilisation:.1%}"]  # fmt: skip


def pools_table(periods: list[PoolPeriod]) -> Table:
    """Each self-hosted pool's GPU cost for the period against what its requests paid."""
    table = Table(title="Self-hosted pools: capacity, billed and idle", show_lines=False)
    for column in _POOL_COLUMNS:
        table.add_column(column, justify="left" if column == "pool" else "right")
    for period in periods:
        table.add_row(*_pool_cells(period))
    return table


def pools_markdown(periods: list[PoolPeriod]) -> str:
    return _markdown(_POOL_COLUMNS, (_pool_cells(p) for p in periods))


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def as_html(
    rows: list[SpendRow], by: list[str], daily: list[SpendRow], by_model: list[SpendRow], title: str
) -> str:
    """`daily` is grouped by day and model, `by_model` by provider and model."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError(
            "html reports draw charts with matplotlib: install spillover[reports]"
        ) from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts = []
    days = sorted({r.group["day"] for r in daily})
    per_model: dict[str, dict[str, float]] = defaultdict(dict)
    for r in daily:
        per_model[r.group["model"]][r.group["day"]] = r.spend_usd
    figure, axes = plt.subplots(figsize=(8, 3.5))
    bottom = [0.0] * len(days)
    for model, spend_by_day in sorted(per_model.items()):
        values = [spend_by_day.get(d, 0.0) for d in days]
        axes.bar(days, values, bottom=bottom, label=model)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.set_title("Spend per day, stacked by model (USD)")
    axes.legend(fontsize=7)
    axes.tick_params(axis="x", labelrotation=45, labelsize=7)
    charts.append(("Spend per day by model", _png(figure)))
    plt.close(figure)

    labels = [f"{r.group['provider']}/{r.group['model']}" for r in by_model]
    figure, axes = plt.subplots(figsize=(8, 3.5))
    axes.bar(
        labels,
        [r.usd_per_mtok or 0.0 for r in by_model],
        color=["tab:green" if r.self_hosted else "tab:blue" for r in by_model],
    )
    axes.set_title("$ per 1M tokens — hosted (blue) vs self-hosted (green)")
    axes.tick_params(axis="x", labelrotation=30, labelsize=7)
    charts.append(("Hosted vs self-hosted $/1M tokens", _png(figure)))
    plt.close(figure)

    figure, axes = plt.subplots(figsize=(8, 3.5))
    axes.bar(labels, [r.cache_savings_usd for r in by_model], color="tab:orange")
    axes.set_title("Prompt-cache savings (USD)")
    axes.tick_params(axis="x", labelrotation=30, labelsize=7)
    charts.append(("Cache savings", _png(figure)))
    plt.close(figure)

    header = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in (*by, *_COLUMNS))
    body = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(row[d]))}</td>" for d in by)
        + "".join(f"<td class=n>{html.escape(_fmt(c, row[c]))}</td>" for c in _COLUMNS)
        + "</tr>"
        for row in _flat(rows, by)
    )
    images = "".join(
        f"<h2>{html.escape(name)}</h2><img alt='{html.escape(name)}' "
        f"src='data:image/png;base64,{data}'>"
        for name, data in charts
    )
    total = sum(r.spend_usd for r in rows)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}}td.n{{text-align:right}}img{{max-width:100%}}
</style></head><body><h1>{html.escape(title)}</h1>
<p>Total spend: <b>${total:,.6f}</b> over {sum(r.requests for r in rows):,} requests.</p>
{images}<h2>By {html.escape(", ".join(by))}</h2><table><tr>{header}</tr>{body}</table>
</body></html>
"""
