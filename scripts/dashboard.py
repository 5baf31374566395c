"""The Grafana dashboard, as data: rows of panels, each a title, its PromQL and a unit.
`build_manifests.py` renders it to config/grafana/spillover.json (`make manifests`); a test
checks every metric and label it names against what the gateway exports."""

from __future__ import annotations

import json
from typing import Any

RATE = "[$__rate_interval]"
ROUTE = 'route=~"$route"'
PROVIDER = 'provider=~"$provider"'
TEAM = 'team=~"$team"'

Panel = tuple[str, list[tuple[str, str]], str, str]  # title, [(expr, legend)], unit, kind


def _quantile(q: float, metric: str, by: str, selector: str = "") -> str:
    return f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}{RATE})))"


ROWS: list[tuple[str, list[Panel]]] = [
    ("Golden signals", [
        ("Requests per second by route",
         [(f"sum by (route) (rate(spillover_requests_total{{{ROUTE}}}{RATE}))", "{{route}}")],
         "reqps", "timeseries"),
        ("Error ratio by route (non-2xx answers)",
         [(f'sum by (route) (rate(spillover_requests_total{{{ROUTE},status!~"2.."}}{RATE}))'
           f" / sum by (route) (rate(spillover_requests_total{{{ROUTE}}}{RATE}))", "{{route}}")],
         "percentunit", "timeseries"),
        ("Latency p50 / p99 by route",
         [(_quantile(0.5, "spillover_request_duration_seconds", "route", ROUTE), "p50 {{route}}"),
          (_quantile(0.99, "spillover_request_duration_seconds", "route", ROUTE),
           "p99 {{route}}")],
         "s", "timeseries"),
        ("Time to first token p99 by provider",
         [(_quantile(0.99, "spillover_time_to_first_token_seconds", "provider",
                     f"{ROUTE},{PROVIDER}"), "{{provider}}")],
         "s", "timeseries"),
        ("Requests by client protocol",
         [(f"sum by (ingress) (rate(spillover_requests_total{{{ROUTE}}}{RATE}))", "{{ingress}}")],
         "reqps", "timeseries"),
        ("In flight", [("spillover_requests_in_flight", "in flight")], "short", "timeseries"),
    ]),
    ("Failover", [
        ("Fallbacks by route and first error",
         [(f"sum by (route, reason) (rate(spillover_fallbacks_total{{{ROUTE}}}{RATE}))",
           "{{route}} {{reason}}")],
         "reqps", "timeseries"),
        ("Skipped targets by reason",
         [(f"sum by (provider, reason) "
           f"(rate(spillover_target_skips_total{{{ROUTE},{PROVIDER}}}{RATE}))",
           "{{provider}} {{reason}}")],
         "reqps", "timeseries"),
        ("Circuit state (0 closed, 1 half-open, 2 open)",
         [(f"max by (provider, model) (spillover_breaker_state{{{PROVIDER}}})",
           "{{provider}}/{{model}}")],
         "short", "timeseries"),
        ("Upstream attempts by outcome and error",
         [(f"sum by (provider, outcome, error) "
           f"(rate(spillover_upstream_attempts_total{{{PROVIDER}}}{RATE}))",
           "{{provider}} {{outcome}} {{error}}")],
         "reqps", "timeseries"),
        ("Retries (allowed, budget exhausted)",
         [(f"sum by (route, outcome) (rate(spillover_retries_total{{{ROUTE}}}{RATE}))",
           "{{route}} {{outcome}}")],
         "reqps", "timeseries"),
        ("Streams interrupted and resumed",
         [(f"sum by (provider) (rate(spillover_streams_interrupted_total{{{ROUTE}}}{RATE}))",
           "interrupted {{provider}}"),
          (f"sum by (to_provider) (rate(spillover_streams_resumed_total{{{ROUTE}}}{RATE}))",
           "resumed on {{to_provider}}")],
         "reqps", "timeseries"),
        ("Usable targets by route",
         [(f"spillover_route_usable_targets{{{ROUTE}}}", "{{route}}")], "short", "timeseries"),
    ]),
    ("Self-hosted pool", [
        ("KV-cache usage", [("spillover_pool_kv_cache_usage", "{{pool}}"),
                            ("spillover_pool_replica_kv_cache_usage", "{{replica}}")],
         "percentunit", "timeseries"),
        ("Queue depth and wait p99",
         [("spillover_pool_queue_depth", "waiting {{pool}}"),
          (_quantile(0.99, "spillover_pool_queue_wait_seconds", "pool"), "wait p99 {{pool}}")],
         "short", "timeseries"),
        ("Shed by reason and priority",
         [(f"sum by (reason, priority) (rate(spillover_pool_shed_total{RATE}))",
           "{{reason}} {{priority}}")],
         "reqps", "timeseries"),
        ("Warm replicas and the floor",
         [("spillover_pool_warm_replicas", "warm {{pool}}"),
          ("spillover_pool_min_warm_replicas", "floor {{pool}}")],
         "short", "timeseries"),
        ("Prefix-cache hit ratio and speculative acceptance",
         [("spillover_pool_prefix_cache_hit_ratio", "prefix hits {{pool}}"),
          ("spillover_pool_replica_spec_decode_acceptance_ratio", "accepted {{replica}}")],
         "percentunit", "timeseries"),
        ("Tokens per second",
         [("spillover_pool_tokens_per_second", "{{pool}}"),
          ("spillover_pool_replica_generation_tokens_per_second", "generated {{replica}}")],
         "short", "timeseries"),
        ("Picks by reason", [(f"sum by (reason) (rate(spillover_pool_picks_total{RATE}))",
                              "{{reason}}")], "reqps", "timeseries"),
    ]),
    ("Money and tokens", [
        ("Spend by team ($ per hour)",
         [(f"sum by (team) (rate(spillover_cost_usd_total{{{TEAM},{ROUTE}}}{RATE})) * 3600",
           "{{team}}")],
         "currencyUSD", "timeseries"),
        ("Spend by provider ($ per hour)",
         [(f"sum by (provider) (rate(spillover_cost_usd_total{{{TEAM},{PROVIDER}}}{RATE})) * 3600",
           "{{provider}}")],
         "currencyUSD", "timeseries"),
        ("Prompt cache: saved vs write premium ($ per hour)",
         [(f"sum(rate(spillover_prompt_cache_saved_usd_total{{{ROUTE}}}{RATE})) * 3600", "saved"),
          (f"sum(rate(spillover_prompt_cache_write_premium_usd_total{{{ROUTE}}}{RATE})) * 3600",
           "write premium")],
         "currencyUSD", "timeseries"),
        ("Tokens by kind",
         [(f"sum by (kind) (rate(spillover_tokens_total{{{ROUTE},{PROVIDER}}}{RATE}))",
           "{{kind}}")],
         "short", "timeseries"),
        ("Budget left", [("spillover_budget_remaining_usd", "{{scope}} {{owner}} {{period}}")],
         "currencyUSD", "timeseries"),
        ("Refused by limits and budgets",
         [(f"sum by (scope, kind) (rate(spillover_limit_rejections_total{RATE}))",
           "limit {{scope}} {{kind}}"),
          (f"sum by (scope) (rate(spillover_budget_rejections_total{RATE}))", "budget {{scope}}")],
         "reqps", "timeseries"),
        ("Dropped in translation",
         [(f"sum by (ingress, what) (rate(spillover_translation_dropped_total{{{ROUTE}}}{RATE}))",
           "{{ingress}} {{what}}")],
         "reqps", "timeseries"),
    ]),
    ("Health", [
        ("Ledger database up", [("min(spillover_ledger_database_up)", "up")], "short", "stat"),
        ("Ledger rows lost", [("max(spillover_ledger_rows_lost)", "lost")], "short", "stat"),
        ("Ledger journal use",
         [("max(spillover_ledger_journal_bytes / spillover_ledger_journal_max_bytes)", "used")],
         "percentunit", "stat"),
        ("Shared state (Redis) up", [("min(spillover_state_backend_up)", "up")], "short", "stat"),
        ("Last reload ok", [("min(spillover_config_last_reload_ok)", "ok")], "short", "stat"),
        ("Memory and event-loop tasks",
         [("process_resident_memory_bytes", "rss {{instance}}"),
          ("spillover_event_loop_tasks", "tasks {{instance}}")],
         "short", "timeseries"),
    ]),
]  # fmt: skip


def _variable(name: str, metric: str) -> dict[str, Any]:
    query = f"label_values({metric}, {name})"
    return {
        "name": name,
        "label": name.capitalize(),
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": f"var-{name}"},
        "definition": query,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
        "sort": 1,
    }


def _panel(panel_id: int, panel: Panel, x: int, y: int) -> dict[str, Any]:
    title, queries, unit, kind = panel
    width, height = (4, 4) if kind == "stat" else (8, 8)
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": x, "y": y, "w": width, "h": height},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}},
        "targets": [
            {
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "expr": expr,
                "legendFormat": legend,
                "refId": chr(ord("A") + i),
            }
            for i, (expr, legend) in enumerate(queries)
        ],
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = 1
    for title, row in ROWS:
        panels.append({"id": next_id, "type": "row", "title": title, "collapsed": False,
                       "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})  # fmt: skip
        next_id += 1
        y += 1
        x = 0
        height = 0
        for panel in row:
            width = 4 if panel[3] == "stat" else 8
            if x + width > 24:  # the next line of the row
                x, y, height = 0, y + height, 0
            built = _panel(next_id, panel, x, y)
            next_id += 1
            height = max(height, built["gridPos"]["h"])
            panels.append(built)
            x += width
        y += height
    return {
        "uid": "spillover",
        "title": "Spillover",
        "tags": ["spillover", "llm-gateway"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Data source",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                },
                _variable("route", "spillover_requests_total"),
                _variable("provider", "spillover_upstream_attempts_total"),
                _variable("team", "spillover_cost_usd_total"),
            ]
        },
        "panels": panels,
    }


def rendered() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"
