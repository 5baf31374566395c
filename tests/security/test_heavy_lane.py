"""Large requests are served by the heavy lane, a process beside the workers, so megabytes of
body or stored conversation never stall another tenant's small request on the workers' loop
(bench/hostile_tenants.py measures that). Here: what goes to the lane, that it answers as
the workers would with exactly one ledger row, that `/metrics` shows both, and that a lane
that dies is stood in for and started again."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import (
    GATEWAY_KEY,
    MockUpstream,
    Proc,
    gateway_config,
    start_gateway,
)

pytestmark = pytest.mark.e2e
THRESHOLD = 32 * 1024


@pytest.fixture(scope="module")
def laned(
    openai_upstream_proc: MockUpstream,
    anthropic_upstream_proc: MockUpstream,
    tmp_path_factory: pytest.TempPathFactory,
    logs_dir: Path,
) -> Iterator[tuple[Proc, Path, str]]:
    ledger = tmp_path_factory.mktemp("lane") / "ledger.sqlite"
    config = gateway_config(openai_upstream_proc.port, anthropic_upstream_proc.port).replace(
        "server: {max_body_bytes: 65536}",
        f"server: {{max_body_bytes: 65536, heavy_lane_bytes: {THRESHOLD}}}\n"
        f'ledger: {{url: "sqlite:///{ledger}", flush_ms: 20}}',
    )
    proc = start_gateway(config, logs_dir, name="laned-gateway")
    try:
        _wait_for(lambda: _metric(proc, "spillover_heavy_lane_up") == 1.0, "the lane up")
        yield proc, ledger, config
    finally:
        proc.stop()


def _post(proc: Proc, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    return httpx.post(proc.url + path, json=body, headers=headers, timeout=20)


def _chat(proc: Proc, text: str) -> httpx.Response:
    body = {"model": "gpt-4o", "max_tokens": 4, "messages": [{"role": "user", "content": text}]}
    return _post(proc, "/v1/chat/completions", body)


def _metric(proc: Proc, name: str, **labels: str) -> float:
    text = httpx.get(proc.url + "/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def _rows(ledger: Path, request_id: str) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(ledger) as db:
            rows = db.execute(
                "SELECT status, endpoint FROM spillover_ledger WHERE request_id = ?", (request_id,)
            ).fetchall()
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def _wait_for(check: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(0.2)


def _lane_pid(proc: Proc) -> int:
    tasks = Path(f"/proc/{proc.process.pid}/task").iterdir()  # the lane's parent: any thread
    pids = [int(p) for task in tasks for p in (task / "children").read_text().split()]
    lanes = [p for p in pids if b"--lane-socket\x00/" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(lanes) == 1, pids
    return lanes[0]


def test_a_large_body_is_served_by_the_lane_with_one_row(laned: tuple[Proc, Path, str]) -> None:
    proc, ledger, _ = laned
    before = _metric(proc, "spillover_heavy_lane_requests_total", reason="body")
    small = _chat(proc, "hi")
    assert _metric(proc, "spillover_heavy_lane_requests_total", reason="body") == before
    large = _chat(proc, "word " * (THRESHOLD // 4))
    assert small.status_code == large.status_code == 200, large.text[:300]
    assert large.json()["choices"][0]["message"]["content"]
    assert _metric(proc, "spillover_heavy_lane_requests_total", reason="body") == before + 1
    # One /metrics: the lane's series join the workers' with lane="heavy".
    assert _metric(proc, "spillover_requests_total", lane="heavy", status="200") >= 1
    for reply in (small, large):
        assert _rows(ledger, reply.headers["x-request-id"]) == [(200, "chat")]


def test_a_large_body_past_the_limit_is_413_from_the_workers(laned: tuple[Proc, Path, str]) -> None:
    proc, _, _ = laned
    reply = _chat(proc, "word " * 20_000)
    assert reply.status_code == 413, reply.text[:300]
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_a_long_stored_conversation_is_continued_by_the_lane(laned: tuple[Proc, Path, str]) -> None:
    proc, ledger, _ = laned
    previous = None
    for _ in range(2):  # two turns of 20 KB: a 40 KB conversation, over the threshold
        body = {"model": "gpt-4o", "input": "turn " * 4000, "max_output_tokens": 8}
        if previous:
            body["previous_response_id"] = previous
        reply = _post(proc, "/v1/responses", body)
        assert reply.status_code == 200, reply.text[:300]
        previous = reply.json()["id"]
    before = _metric(proc, "spillover_heavy_lane_requests_total", reason="history")
    reply = _post(
        proc,
        "/v1/responses",
        {"model": "gpt-4o", "input": "and?", "previous_response_id": previous},
    )
    assert reply.status_code == 200, reply.text[:300]
    assert reply.json()["status"] == "completed"
    assert _metric(proc, "spillover_heavy_lane_requests_total", reason="history") == before + 1
    assert _rows(ledger, reply.headers["x-request-id"]) == [(200, "chat")]


def test_a_lane_that_dies_is_stood_in_for_and_started_again(laned: tuple[Proc, Path, str]) -> None:
    proc, ledger, _ = laned
    os.kill(_lane_pid(proc), signal.SIGKILL)
    served = [_chat(proc, "word " * (THRESHOLD // 4)) for _ in range(3)]
    assert [r.status_code for r in served] == [200, 200, 200], [r.text[:200] for r in served]
    for reply in served:
        assert _rows(ledger, reply.headers["x-request-id"]) == [(200, "chat")]
    _wait_for(lambda: _metric(proc, "spillover_heavy_lane_up") == 1.0, "the lane back")
    assert "the heavy lane exited" in proc.output()


def test_a_killed_gateway_takes_its_lane_along(
    laned: tuple[Proc, Path, str], logs_dir: Path
) -> None:
    _, _, config = laned
    other = start_gateway(config, logs_dir, name="killed-gateway")
    _wait_for(lambda: _metric(other, "spillover_heavy_lane_up") == 1.0, "the lane up")
    lane = _lane_pid(other)
    other.process.kill()
    other.process.wait(5)
    _wait_for(lambda: not Path(f"/proc/{lane}").exists() or _zombie(lane), "the lane gone", 5)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True
