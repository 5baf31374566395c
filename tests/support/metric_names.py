"""What the gateway exports, as PromQL sees it — every series name with the labels it can
carry — and a checker for the PromQL the repository ships (dashboard, alert rules)."""

from __future__ import annotations

import re

from prometheus_client import generate_latest

from gateway.metrics import GatewayMetrics

# Labels Prometheus adds or histograms carry, beside a metric's own.
BUILT_IN = {"le", "instance", "job"}
_SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
_FUNCTIONS = {"sum", "rate", "max", "min", "avg", "histogram_quantile", "by", "without",
              "count", "irate", "increase", "label_values", "on", "ignoring", "and", "or",
              "unless", "time", "bool", "clamp_min", "clamp_max", "abs", "topk"}  # fmt: skip


def exported_series() -> dict[str, set[str]]:
    """Series name → its label names, for every metric a gateway defines."""
    metrics = GatewayMetrics()
    series: dict[str, set[str]] = {}
    for holder in (metrics, metrics.pool):
        for value in vars(holder).values():
            kind = getattr(value, "_type", None)
            if kind not in _SUFFIXES:
                continue
            for suffix in _SUFFIXES[kind]:
                series[value._name + suffix] = set(value._labelnames)
    text = generate_latest(metrics.registry).decode()
    for name in re.findall(r"^# TYPE (process_\S+) gauge", text, re.M):
        series[name] = set()
    for name in re.findall(r"^# TYPE (process_\S+) counter", text, re.M):
        series[name + "_total"] = set()
    return series


def problems(expr: str, legend: str = "") -> list[str]:
    """What in one PromQL expression (and its legend) names a series or label that no
    exported metric has."""
    series = exported_series()
    text = re.sub(r'"[^"]*"', '""', expr)  # matcher values are data, not names
    names = [n for n in re.findall(r"\b([a-z_][a-z0-9_]*)\b", text) if n not in _FUNCTIONS]
    metrics = [n for n in names if n.startswith(("spillover_", "process_"))]
    found = [m for m in metrics if m not in series]
    labels = set(re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", text))
    used = {label.strip() for group in labels for label in group.split(",") if label.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", text):
        used |= set(re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers))
    used |= set(re.findall(r"\{\{\s*([a-z_]+)\s*\}\}", legend))
    known = set().union(*(series.get(m, set()) for m in metrics)) | BUILT_IN
    found += [f"label {label}" for label in sorted(used - known)]
    return found
