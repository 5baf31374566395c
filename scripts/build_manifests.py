"""Write the generated deploy manifests: the PrometheusRule from config/alerts.yaml, so the
cluster's alerts are the ones the repository tests. With --check, write nothing and exit 1
when the committed file differs from what would be generated."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULE = ROOT / "deploy" / "kubernetes" / "base" / "prometheusrule.yaml"
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
    text = prometheus_rule()
    if RULE.exists() and RULE.read_text() == text:
        return 0
    if "--check" in argv:
        print(
            f"stale: {RULE.relative_to(ROOT)} (run `make manifests` and commit it)", file=sys.stderr
        )
        return 1
    RULE.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
