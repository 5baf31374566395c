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
DASHBOARD_MAP = ROOT / "deploy" / "kubernetes" / "base" / "grafana-dashboard.yaml"
HEADER = "# Generated from config/alerts.yaml by `make manifests`; edit that file instead.\n"
MAP_HEADER = (
    "# Generated from scripts/dashboard.py by `make manifests`. Grafana's dashboard sidecar\n"
    "# (the grafana_dashboard label) loads it; or import config/grafana/spillover.json.\n"
)


class _Literal(str):
    """A string YAML writes as a literal block (the dashboard stays readable in the map)."""


def _literal(dumper: yaml.SafeDumper, value: _Literal) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")


yaml.SafeDumper.add_representer(_Literal, _literal)


def prometheus_rule() -> str:
    alerts = yaml.safe_load((ROOT / "config" / "alerts.yaml").read_text())
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "spillover", "labels": {"app.kubernetes.io/name": "spillover"}},
        "spec": {"groups": alerts["groups"]},
    }
    return HEADER + yaml.safe_dump(rule, sort_keys=False, width=100)


def dashboard_config_map(text: str) -> str:
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "spillover-grafana-dashboard",
            "labels": {"app.kubernetes.io/name": "spillover", "grafana_dashboard": "1"},
        },
        "data": {"spillover.json": _Literal(text)},
    }
    return MAP_HEADER + yaml.safe_dump(config_map, sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    board = dashboard()
    files = {RULE: prometheus_rule(), DASHBOARD: board, DASHBOARD_MAP: dashboard_config_map(board)}
    return sync(files, ROOT, argv, "make manifests")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
