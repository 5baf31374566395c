"""Every answered request has exactly one ledger row, even when the gateway is SIGKILLed
under load (the row is in the journal before the answer's last byte), and a SIGTERM drains:
readiness fails first, in-flight streams finish, and nothing is lost."""

from __future__ import annotations

import signal
import sqlite3
import textwrap
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.processes import GATEWAY_KEY, MockUpstream, Proc, start_gateway

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}


def _config(openai_port: int, ledger: Path, server: str = "") -> str:
    return textwrap.dedent(f"""\
        server: {{{server}}}
        ledger: {{url: "sqlite:///{ledger}", flush_ms: 400, batch_size: 64}}
        providers:
          primary:
            kind: openai
            api_base: http://127.0.0.1:{openai_port}/v1
        routes:
          chat:
            targets: [{{provider: primary, model: gpt-4o}}]
        keys:
          - {{name: tests, key: "${{TEST_GATEWAY_KEY}}"}}
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true}}
        """)


def _rows_by_request_id(ledger: Path) -> dict[str, int]:
    with sqlite3.connect(ledger) as conn:
        counts: dict[str, int] = {}
        query = "SELECT client_request_id FROM spillover_ledger"  # the id the test sent
        for (request_id,) in conn.execute(query):
            counts[request_id] = counts.get(request_id, 0) + 1
        uids = conn.execute("SELECT COUNT(*), COUNT(DISTINCT uid) FROM spillover_ledger").fetchone()
    assert uids[0] == uids[1]
    return counts


def _client_loop(url: str, answered: list[str], stop: threading.Event, stream: bool) -> None:
    body = {
        "model": "chat",
        "max_tokens": 8,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.Client(timeout=10) as client:
        while not stop.is_set():
            request_id = uuid.uuid4().hex
            try:
                with client.stream(
                    "POST",
                    url + "/v1/chat/completions",
                    json=body,
                    headers={**AUTH, "x-request-id": request_id},
                ) as reply:
                    data = reply.read()
                    done = not stream or data.rstrip().endswith(b"data: [DONE]")
                    if reply.status_code == 200 and done:
                        answered.append(request_id)
            except httpx.HTTPError:
                return  # the gateway is gone


def test_no_answered_row_is_lost_when_the_gateway_is_killed_under_load(
    openai_upstream: MockUpstream, tmp_path: Path, logs_dir: Path
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    config = _config(openai_upstream.port, ledger)
    proc = start_gateway(config, logs_dir, name="ledger-sigkill")
    answered: list[str] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=_client_loop, args=(proc.url, answered, stop, i % 4 == 0))
        for i in range(16)
    ]
    for client in clients:
        client.start()
    time.sleep(3.0)
    proc.process.send_signal(signal.SIGKILL)  # no flush, no shutdown: as the OOM killer would
    proc.process.wait(10)
    stop.set()
    for client in clients:
        client.join(15)
    assert len(answered) > 100, "the load did not run"
    restarted = start_gateway(config, logs_dir, name="ledger-sigkill-restarted")
    try:
        deadline = time.monotonic() + 15
        while True:
            rows = _rows_by_request_id(ledger)
            missing = [r for r in answered if r not in rows]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        restarted.stop()
    assert missing == [], f"{len(missing)} of {len(answered)} answered requests have no row"
    assert all(rows[r] == 1 for r in answered)


def test_sigterm_drains_readiness_first_and_finishes_streams(
    openai_upstream: MockUpstream, tmp_path: Path, logs_dir: Path
) -> None:
    openai_upstream.configure(tokens_per_s=10, output_tokens=20)  # a 2-second stream
    ledger = tmp_path / "ledger.sqlite"
    config = _config(openai_upstream.port, ledger, "drain_s: 1.5, graceful_shutdown_s: 10")
    proc: Proc = start_gateway(config, logs_dir, name="ledger-sigterm")
    results: dict[str, bytes] = {}

    def stream(request_id: str) -> None:
        body = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "x"}]}
        reply = httpx.post(
            proc.url + "/v1/chat/completions",
            json=body,
            headers={**AUTH, "x-request-id": request_id},
            timeout=20,
        )
        results[request_id] = reply.content if reply.status_code == 200 else b""

    streams = [threading.Thread(target=stream, args=(f"stream-{i}",)) for i in range(4)]
    for thread in streams:
        thread.start()
    time.sleep(0.5)  # the streams are under way
    proc.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert httpx.get(proc.url + "/health/ready", timeout=5).status_code == 503
    assert httpx.get(proc.url + "/health/live", timeout=5).status_code == 200
    late = httpx.post(
        proc.url + "/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "late"}]},
        headers={**AUTH, "x-request-id": "late"},
        timeout=10,
    )
    assert late.status_code == 200  # still served while the balancer catches up
    for thread in streams:
        thread.join(20)
    # uvicorn ends by re-raising the signal it handled: a clean stop exits "by SIGTERM".
    assert proc.process.wait(20) in (0, -signal.SIGTERM)
    assert "Finished server process" in proc.output()
    for request_id, content in results.items():
        assert content.rstrip().endswith(b"data: [DONE]"), f"{request_id} was cut"
    rows = _rows_by_request_id(ledger)
    assert all(rows.get(r) == 1 for r in [*results, "late"]), rows
