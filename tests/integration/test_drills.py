"""Failover drills end to end: every shipped scenario, in short form, against a gateway with
mock providers and a simulated pool; a misconfigured route fails its drill; the admin fault
API is admin-only and faults expire by themselves."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.pool import Replica, metric, start_sim, wait_ready
from tests.support.processes import (
    ADMIN_KEY,
    GATEWAY_KEY,
    ROOT,
    MockUpstream,
    Proc,
    start_gateway,
)
from tests.support.redis import real_redis_url

pytestmark = pytest.mark.e2e
SCENARIOS = ["provider-outage", "provider-outage-anthropic", "rate-limit-storm", "latency-spike",
             "stream-cut", "pool-replica-crash", "kv-pressure"]  # fmt: skip
# redis-down needs a gateway with shared state: its own test below.


@pytest.fixture(scope="module")
def pool(logs_dir: Path) -> Iterator[list[Replica]]:
    sims = [start_sim(logs_dir, f"drill-sim-{i}", "--model", "llama-3.1-8b") for i in range(2)]
    yield sims
    for sim in sims:
        sim.stop()


def _config(
    openai_port: int, anthropic_port: int, pool: list[Replica], ledger: Path, extra: str = ""
) -> str:
    return (
        textwrap.dedent(f"""\
        drills: {{enabled: true}}
        ledger: {{url: "sqlite:///{ledger}", flush_ms: 50}}
        providers:
          primary: {{kind: openai, api_base: "http://127.0.0.1:{openai_port}/v1"}}
          claude: {{kind: anthropic, api_base: "http://127.0.0.1:{anthropic_port}"}}
          local:
            kind: vllm_pool
            model: llama-3.1-8b
            replicas: ["{pool[0].url}", "{pool[1].url}"]
            health: {{every_s: 0.5}}
        routes:
          gpt-4o:
            targets: [{{provider: primary, model: gpt-4o}}, {{provider: claude, model: claude-sonnet-4-5}}]
            resume_streams: true
            fail_over_when: {{consecutive_failures: 3}}
            breaker: {{base_ejection_s: 1}}
          llama-3.1-8b:
            targets: [{{provider: local, model: llama-3.1-8b}}, {{provider: primary, model: gpt-4o-mini}}]
          claude-sonnet-4-5:
            targets: [{{provider: claude, model: claude-sonnet-4-5}}, {{provider: primary, model: gpt-4o}}]
            fail_over_when: {{consecutive_failures: 3}}
            breaker: {{base_ejection_s: 1}}
          only-primary:
            targets: [{{provider: primary, model: gpt-4o}}]
        keys:
          - {{name: tests, team: qa, key: "${{TEST_GATEWAY_KEY}}", limits: {{rpm: 100000}}}}
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true, routes: []}}
        """)
        + extra
    )


@pytest.fixture
def drill_gateway(
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    pool: list[Replica],
    logs_dir: Path,
    tmp_path: Path,
) -> Iterator[tuple[Proc, Path]]:
    ledger = tmp_path / "ledger.sqlite"
    config = _config(openai_upstream.port, anthropic_upstream.port, pool, ledger)
    proc = start_gateway(config, logs_dir, name="drills")
    for sim in pool:
        wait_ready(proc, sim.url)
    yield proc, ledger
    proc.stop()


def _drill(
    proc: Proc, scenario: str, report: Path, scale: float = 0.2
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "drill", "run", scenario, "--gateway", proc.url,
         "--admin-key", ADMIN_KEY, "--key", GATEWAY_KEY, "--scale", str(scale),
         "--report", str(report)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_shipped_scenario_holds_its_slos(
    scenario: str, drill_gateway: tuple[Proc, Path], tmp_path: Path
) -> None:
    proc, ledger = drill_gateway
    result = _drill(proc, scenario, tmp_path / "report")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["verdict"] == "pass" and report["fault_windows"]
    assert (tmp_path / "report" / "report.md").read_text().startswith(f"# Drill `{scenario}`: PASS")
    html = (tmp_path / "report" / "report.html").read_text()
    assert "data:image/png;base64," in html and "failover time" in html
    # Drill traffic is marked on its ledger rows, with the faults injected into it.
    marks = [r[0] for r in sqlite3.connect(ledger).execute("SELECT drill FROM spillover_ledger")]
    assert marks and all(m and m.startswith(f"drill-{scenario}-") for m in marks)
    assert any(":" in m.split(",", 1)[-1] for m in marks if "," in m)
    # The clients spoke the scenario's protocol, and their rows say so.
    protocol = "anthropic" if scenario.endswith("-anthropic") else "openai"
    ingresses = {
        r[0] for r in sqlite3.connect(ledger).execute("SELECT ingress FROM spillover_ledger")
    }
    assert ingresses == {protocol}


def test_a_drill_fails_when_the_route_has_no_fallback(
    drill_gateway: tuple[Proc, Path], tmp_path: Path
) -> None:
    proc, _ = drill_gateway
    broken = (
        (ROOT / "config" / "drills" / "provider-outage.yaml")
        .read_text()
        .replace("route: gpt-4o", "route: only-primary")
    )
    scenario = tmp_path / "outage-without-fallback.yaml"
    scenario.write_text(broken)
    result = _drill(proc, str(scenario), tmp_path / "report")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    failed = {c["name"] for c in report["checks"] if not c["ok"]}
    assert "client-visible error rate" in failed and report["verdict"] == "fail"


def test_the_fault_api_is_admin_only_and_faults_expire(drill_gateway: tuple[Proc, Path]) -> None:
    proc, _ = drill_gateway
    spec = {"kind": "error", "provider": "primary", "status": 500, "duration_s": 0.5}
    assert httpx.post(proc.url + "/admin/faults", json=spec).status_code == 401
    user = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    assert httpx.post(proc.url + "/admin/faults", json=spec, headers=user).status_code == 403
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    bad = httpx.post(proc.url + "/admin/faults", json={**spec, "kind": "meteor"}, headers=admin)
    assert bad.status_code == 400
    created = httpx.post(proc.url + "/admin/faults", json=spec, headers=admin)
    assert created.status_code == 201
    assert [
        f["id"] for f in httpx.get(proc.url + "/admin/faults", headers=admin).json()["faults"]
    ] == [created.json()["id"]]
    reply = httpx.post(
        proc.url + "/v1/chat/completions",
        headers={**user, "x-spillover-drill": "manual"},
        json={"model": "only-primary", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert reply.status_code == 502  # the injected 500, no fallback on this route
    attempts = len(reply.json()["error"]["attempts"])  # the route retried the same target
    metrics = httpx.get(proc.url + "/metrics").text
    injected = f'spillover_faults_injected_total{{kind="error",provider="primary"}} {attempts}.0'
    assert injected in metrics
    time.sleep(0.6)
    assert httpx.get(proc.url + "/admin/faults", headers=admin).json()["faults"] == []
    ok = httpx.post(
        proc.url + "/v1/chat/completions",
        headers=user,
        json={"model": "only-primary", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert ok.status_code == 200  # expired by itself


def test_redis_down_the_gateway_serves_on_local_state_and_shares_again(
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    pool: list[Replica],
    logs_dir: Path,
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    state = (
        f"state: {{backend: redis, url: '{real_redis_url()}', timeout_ms: 200, "
        f"key_prefix: 'drill-{uuid.uuid4().hex[:8]}:'}}\n"
    )
    config = _config(openai_upstream.port, anthropic_upstream.port, pool, ledger, state)
    proc = start_gateway(config, logs_dir, name="drills-redis")
    try:
        result = _drill(proc, "redis-down", tmp_path / "report", scale=0.3)
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads((tmp_path / "report" / "report.json").read_text())
        measures = report["measures"]
        assert report["verdict"] == "pass"
        assert measures["error_rate"] == 0 and measures["lost_rows"] == 0
        assert measures["state_fallback_time_s"] is not None
        assert measures["state_resync_time_s"] is not None
        assert "shared again" in (tmp_path / "report" / "report.md").read_text()
        # Shared again after the drill: routing state and limits both back on Redis.
        assert metric(proc, "spillover_state_backend_up") == 1
        assert metric(proc, "spillover_limits_shared") == 1
        assert metric(proc, "spillover_faults_injected_total", kind="redis_down") > 0
        marks = [
            r[0] for r in sqlite3.connect(ledger).execute("SELECT drill FROM spillover_ledger")
        ]
        assert any(m and m.endswith(":redis_down") for m in marks)
    finally:
        proc.stop()


def test_redis_down_is_refused_where_there_is_no_shared_state(
    drill_gateway: tuple[Proc, Path], tmp_path: Path
) -> None:
    proc, _ = drill_gateway
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    reply = httpx.post(proc.url + "/admin/faults", json={"kind": "redis_down"}, headers=admin)
    assert reply.status_code == 409 and "state.backend" in reply.text
    scoped = {"kind": "redis_down", "scope": "drill-1"}  # the whole process or nothing
    assert httpx.post(proc.url + "/admin/faults", json=scoped, headers=admin).status_code == 400
    result = _drill(proc, "redis-down", tmp_path / "report")
    assert result.returncode == 2 and "state.backend" in result.stdout + result.stderr
