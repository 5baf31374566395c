"""The cost report's CSV (`spillover costs --format csv`, the console's download): every
row and column, and a name a spreadsheet would run as a formula quoted as text."""

from __future__ import annotations

import csv
import io

from gateway.accounting.report_render import as_csv
from gateway.accounting.reports import SpendRow


def _row(team: str, spend: float) -> SpendRow:
    return SpendRow(
        group={"team": team}, requests=3, spend_usd=spend, unpriced_requests=0,
        prompt_tokens=30, cached_tokens=10, completion_tokens=6, cache_hit_ratio=1 / 3,
        cache_savings_usd=0.001, fallback_share=0.0, response_cache_hits=1,
        response_cache_saved_usd=0.002, usd_per_mtok=1.5, self_hosted=False,
    )  # fmt: skip


def test_the_csv_has_every_row_and_quotes_would_be_formulas() -> None:
    text = as_csv([_row("search", 0.25), _row("=HYPERLINK(\"x\")", 0.5), _row("-", 0.0)],
                  ["team"])  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["team"] for r in rows] == ["search", '\'=HYPERLINK("x")', "-"]
    assert [float(r["spend_usd"]) for r in rows] == [0.25, 0.5, 0.0]
    assert rows[0]["requests"] == "3" and rows[0]["self_hosted"] == "False"
    assert set(rows[0]) >= {"team", "cache_savings_usd", "usd_per_mtok", "unpriced_requests"}
