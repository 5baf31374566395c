"""Cost reports from a ledger filled through the gateway: `spillover costs` in every format
(the HTML self-contained, with three charts) and `GET /admin/spend`, agreeing with the
ledger to the micro-dollar."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ADMIN_KEY, GATEWAY_KEY, ROOT, MockUpstream, start_gateway

pytestmark = pytest.mark.e2e


def test_costs_cli_and_admin_spend(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, tmp_path: Path, logs_dir: Path
) -> None:
    db = tmp_path / "ledger.sqlite"
    config_text = textwrap.dedent(f"""\
        ledger: {{url: "sqlite:///{db}", flush_ms: 20, spool_path: "{tmp_path}/spool"}}
        providers:
          primary: {{kind: openai, api_base: "http://127.0.0.1:{openai_upstream.port}/v1"}}
          claude: {{kind: anthropic, api_base: "http://127.0.0.1:{anthropic_upstream.port}"}}
        routes:
          gpt-4o:
            targets: [{{provider: primary, model: gpt-4o}},
                      {{provider: claude, model: claude-sonnet-4-5}}]
          mini:
            targets: [{{provider: primary, model: gpt-4o-mini}}]
        keys:
          - {{name: search, team: search, key: "${{TEST_GATEWAY_KEY}}"}}
          - {{name: ops, team: platform, key: "${{TEST_ADMIN_KEY}}", admin: true}}
        """)
    config = tmp_path / "spillover.yaml"
    config.write_text(config_text)
    proc = start_gateway(config_text, logs_dir, name="reports")
    try:

        def ask(key: str, model: str) -> None:
            reply = httpx.post(
                proc.url + "/v1/chat/completions",
                json={
                    "model": model,
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                headers={"Authorization": f"Bearer {key}"},
                timeout=10,
            )
            assert reply.status_code == 200

        for _ in range(3):
            ask(GATEWAY_KEY, "gpt-4o")
        ask(ADMIN_KEY, "mini")
        openai_upstream.configure(error_rate=1, error_status=503)
        ask(GATEWAY_KEY, "gpt-4o")  # served by the fallback
        time.sleep(0.3)
        with sqlite3.connect(db) as conn:
            by_team = dict(
                conn.execute(
                    "SELECT team, sum(cost_micro_usd) FROM spillover_ledger GROUP BY team"
                ).fetchall()
            )

        def costs(*args: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "gateway", "costs", "--config", str(config), *args],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env={"TEST_GATEWAY_KEY": "x", "TEST_ADMIN_KEY": "y", "PATH": "/usr/bin:/bin"},
                timeout=120,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        report = json.loads(costs("--by", "team", "--format", "json"))
        spent = {r["group"]["team"]: round(r["spend_usd"] * 1_000_000) for r in report["rows"]}
        assert spent == by_team
        search = next(r for r in report["rows"] if r["group"]["team"] == "search")
        assert search["requests"] == 4 and search["fallback_share"] == 0.25

        rows = list(csv.DictReader(io.StringIO(costs("--by", "provider,model", "--format", "csv"))))
        assert {(r["provider"], r["model"]) for r in rows} == {
            ("primary", "gpt-4o"),
            ("primary", "gpt-4o-mini"),
            ("claude", "claude-sonnet-4-5"),
        }
        assert "| team |" in costs("--by", "team", "--format", "markdown")
        assert "Spillover spend" in costs("--by", "team")

        out = tmp_path / "report.html"
        costs("--by", "team,model", "--format", "html", "--out", str(out))
        page = out.read_text()
        assert page.count("src='data:image/png;base64,") == 3
        assert "http" not in page.replace("<!doctype html>", "")  # nothing to fetch

        admin = httpx.get(
            proc.url + "/admin/spend",
            params={"by": "team", "since": "1d"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ).json()
        assert {
            r["group"]["team"]: round(r["spend_usd"] * 1_000_000) for r in admin["rows"]
        } == by_team
        by_ingress = httpx.get(
            proc.url + "/admin/spend",
            params={"by": "ingress", "since": "1d"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ).json()
        assert sum(round(r["spend_usd"] * 1_000_000) for r in by_ingress["rows"]) == sum(
            by_team.values()
        )
        assert {r["group"]["ingress"] for r in by_ingress["rows"]} <= {
            "openai", "anthropic", "responses"
        }  # fmt: skip
        assert (
            httpx.get(
                proc.url + "/admin/spend", headers={"Authorization": f"Bearer {GATEWAY_KEY}"}
            ).status_code
            == 403
        )
        assert (
            httpx.get(
                proc.url + "/admin/spend",
                params={"by": "colour"},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            ).status_code
            == 400
        )
    finally:
        proc.stop()
