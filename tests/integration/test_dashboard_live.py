"""The dashboard and the alert rules against a running gateway's own `/metrics` (after it
served traffic): every series they query is one the process exports — the unit test checks
the metric definitions, this checks what a scrape actually returns."""

from __future__ import annotations

import json
import re

import httpx
import pytest
import yaml
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import GATEWAY_KEY, ROOT, Proc

pytestmark = pytest.mark.e2e
_SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}


def _scraped(gateway: Proc) -> set[str]:
    text = httpx.get(gateway.url + "/metrics", timeout=10).text
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        for suffix in _SUFFIXES.get(family.type, [""]):
            names.add(family.name + suffix)
    return names


def _queried() -> dict[str, set[str]]:
    """Series name → where it is queried (a panel or an alert)."""
    out: dict[str, set[str]] = {}
    dashboard = json.loads((ROOT / "config" / "grafana" / "spillover.json").read_text())
    exprs = [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    exprs += [
        (variable["name"], variable["definition"])
        for variable in dashboard["templating"]["list"]
        if variable["type"] == "query"
    ]
    rules = yaml.safe_load((ROOT / "config" / "alerts.yaml").read_text())["groups"][0]["rules"]
    exprs += [(rule["alert"], rule["expr"]) for rule in rules]
    for where, expr in exprs:
        for name in re.findall(r"\b((?:spillover|process)_[a-z0-9_]+)\b", expr):
            out.setdefault(name, set()).add(where)
    return out


def test_every_queried_series_is_in_a_live_scrape(gateway: Proc) -> None:
    client = OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "dashboard"}], max_tokens=4
    )
    scraped = _scraped(gateway)
    queried = _queried()
    assert len(queried) >= 40
    missing = {name: sorted(where) for name, where in queried.items() if name not in scraped}
    assert missing == {}
