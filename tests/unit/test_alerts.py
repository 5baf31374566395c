"""The shipped alert rules refer only to metrics the gateway exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest

from gateway.metrics import GatewayMetrics

ROOT = Path(__file__).resolve().parent.parent.parent


def test_alert_rules_use_exported_metric_names() -> None:
    rules = yaml.safe_load((ROOT / "config" / "alerts.yaml").read_text())["groups"][0]["rules"]
    metrics = GatewayMetrics()
    exported = set(re.findall(r"^# TYPE (\S+)", generate_latest(metrics.registry).decode(), re.M))
    exported |= {name + "_total" for name in exported}
    for rule in rules:
        for name in re.findall(r"\b(spillover_[a-z_]+)", rule["expr"]):
            assert name in exported, (rule["alert"], name)
