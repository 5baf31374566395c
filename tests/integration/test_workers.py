"""`server.workers: 2`: both workers serve, every answered request has one ledger row (two
processes journaling into one SQLite ledger), and with in-memory state the gateway says at
start what that means for limits and budgets."""

from __future__ import annotations

import sqlite3
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.processes import GATEWAY_KEY, MockUpstream, start_gateway

pytestmark = pytest.mark.e2e


def test_two_workers_serve_and_bill_every_request_once(
    openai_upstream: MockUpstream, logs_dir: Path, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    config = textwrap.dedent(f"""\
        server: {{workers: 2}}
        ledger: {{url: "sqlite:///{ledger}", flush_ms: 50}}
        providers:
          primary: {{kind: openai, api_base: "http://127.0.0.1:{openai_upstream.port}/v1"}}
        routes:
          gpt-4o: {{targets: [{{provider: primary, model: gpt-4o}}]}}
        keys:
          - {{name: tests, key: "${{TEST_GATEWAY_KEY}}"}}
        """)
    proc = start_gateway(config, logs_dir, name="two-workers")
    try:
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}

        def ask(i: int) -> str:
            reply = httpx.post(proc.url + "/v1/chat/completions", json=body, timeout=10,
                               headers={**headers, "x-request-id": f"two-workers-{i}"})  # fmt: skip
            assert reply.status_code == 200
            return reply.headers["x-request-id"]

        with ThreadPoolExecutor(8) as pool:
            ids = set(pool.map(ask, range(200)))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with sqlite3.connect(ledger) as db:
                rows = [r[0] for r in db.execute("SELECT request_id FROM spillover_ledger")]
            if len(rows) >= len(ids):
                break
            time.sleep(0.2)
    finally:
        proc.stop()
    assert sorted(rows) == sorted(ids)
    text = proc.output()
    assert "server.workers: 2 with state.backend: memory" in text
    started = [line for line in text.splitlines() if "Application startup complete" in line]
    assert len([line for line in started if "[heavy-lane]" not in line]) == 2
