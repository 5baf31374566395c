"""Budgets with reservations through the HTTP surface: a hard budget refuses once spent
(overspending by at most one request's reservation), names itself, and never touches other
keys; a soft budget warns in a response header and keeps serving."""

from __future__ import annotations

import sqlite3
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import GATEWAY_KEY, MockUpstream, start_gateway

pytestmark = pytest.mark.e2e


def test_hard_and_soft_budgets(
    openai_upstream: MockUpstream, tmp_path: Path, logs_dir: Path
) -> None:
    db = tmp_path / "ledger.sqlite"
    config = textwrap.dedent(f"""\
        timezone: Europe/Oslo
        ledger: {{url: "sqlite:///{db}", flush_ms: 20, spool_path: "{tmp_path}/spool"}}
        providers:
          primary: {{kind: openai, api_base: "http://127.0.0.1:{openai_upstream.port}/v1"}}
        routes:
          gpt-4o:
            targets: [{{provider: primary, model: gpt-4o}}]
        keys:
          - {{name: capped, team: qa, key: "${{TEST_GATEWAY_KEY}}",
              budget: {{daily_usd: 0.0001, mode: hard}}}}
          - {{name: watched, key: sk-watched, budget: {{daily_usd: 0.0001, mode: soft}}}}
          - {{name: free, key: sk-free}}
        """)
    proc = start_gateway(config, logs_dir, name="budgets")
    body = {"model": "gpt-4o", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}

    def ask(key: str) -> httpx.Response:
        return httpx.post(
            proc.url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )

    try:
        statuses = []
        for _ in range(4):
            statuses.append(ask(GATEWAY_KEY).status_code)
        # Each answer costs 70 µ$ at gpt-4o prices (8 prompt tokens x $2.50/M + 5 x $10/M):
        # the first leaves 30 µ$, the second overspends by less than one reservation.
        assert statuses == [200, 200, 429, 429]
        refused = ask(GATEWAY_KEY)
        error = refused.json()["error"]
        assert error["code"] == "budget_exceeded"
        assert "key capped daily budget ($0.00)" in error["message"]
        assert 0 < int(refused.headers["retry-after"]) <= 86_400
        assert ask("sk-free").status_code == 200  # one key's budget never touches another

        warned = [ask("sk-watched") for _ in range(3)]
        assert [r.status_code for r in warned] == [200, 200, 200]
        assert "x-spillover-budget-warning" not in warned[0].headers
        assert (
            warned[2].headers["x-spillover-budget-warning"]
            == "key watched daily budget ($0.00) exceeded"
        )

        time.sleep(0.3)
        with sqlite3.connect(db) as conn:
            spent = conn.execute(
                "SELECT sum(cost_micro_usd) FROM spillover_ledger WHERE key_name = 'capped'"
            ).fetchone()[0]
        assert spent == 140  # exactly what the budget counted: at most one request over
        metrics = httpx.get(proc.url + "/metrics").text
        assert 'spillover_budget_rejections_total{scope="key"} 3.0' in metrics
    finally:
        proc.stop()
