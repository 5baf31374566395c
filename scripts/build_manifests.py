"""Write the generated deploy files: the PrometheusRule from config/alerts.yaml, so the
cluster's alerts are the ones the repository tests, and the Grafana dashboard from
scripts/dashboard.py. With --check, write nothing and exit 1 when a committed file differs
from what would be generated."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from dashboard import rendered as dashboard
from generated import sync

ROOT = Path(__file__).resolve().parent.parent
RULE = ROOT / "deploy" / "kubernetes" / "base" / "prometheusrule.yaml"
DASHBOARD = ROOT / "config" / "grafana" / "spillover.json"
HEADER = "# Generated from config/alerts.yaml by `make manifests`; edit that file instead.\n"


def prometheus_rule() -> str:
    alerts = yaml.safe_load((ROOT / "config" / "alerts.yaml").read_text())
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "spillover", "labels": {"app.kubernetes.io/name": "spillover"}},
        "spec": {"groups": alerts["groups"]},
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    return sync({RULE: prometheus_rule(), DASHBOARD: dashboard()}, ROOT, argv, "make manifests")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
