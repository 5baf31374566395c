"""`spillover demo` (what `make run` starts): up with no keys, answers the official SDK,
fails over when the mock primary breaks, and Ctrl-C stops everything it started."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.processes import ROOT, free_ports

pytestmark = pytest.mark.e2e


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_serves_fails_over_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    # Five in a row: the gateway, two mocks, and the pool's two replicas (pool_port, +1).
    gateway_port, openai_port, anthropic_port, pool_port, _ = free_ports(5, consecutive=True)
    log = tmp_path / "demo.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "demo",
            "--port",
            str(gateway_port),
            "--openai-port",
            str(openai_port),
            "--anthropic-port",
            str(anthropic_port),
            "--pool-port",
            str(pool_port),
        ],
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so a failing test can stop the demo and its children
    )

    def kill_all() -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    base = f"http://127.0.0.1:{gateway_port}"
    try:
        # Up means: the demo itself printed its banner (it prints once it saw readiness).
        deadline = time.monotonic() + 30
        while "Ctrl-C stops everything" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                kill_all()
                pytest.fail(f"the demo did not come up:\n{log.read_text()}")
            time.sleep(0.1)
        client = openai.OpenAI(base_url=base + "/v1", api_key="sk-spillover-demo", max_retries=0)
        reply = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.headers["x-spillover-provider"] == "primary"
        assert reply.parse().choices[0].message.content
        httpx.post(
            f"http://127.0.0.1:{openai_port}/_mock/config",
            json={"error_rate": 1, "error_status": 503},
        ).raise_for_status()
        reply = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.headers["x-spillover-provider"] == "claude"
        httpx.post(
            f"http://127.0.0.1:{anthropic_port}/_mock/config",
            json={"error_rate": 1, "error_status": 529},
        ).raise_for_status()
        deadline = time.monotonic() + 10
        while (
            httpx.get(f"{base}/metrics").text.count(
                'spillover_pool_warm_replicas{pool="local"} 2.0'
            )
            == 0
        ):
            assert time.monotonic() < deadline, "the demo's pool did not warm up"
            time.sleep(0.1)
        reply = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
        )
        # Both hosted providers down: the own (simulated) vLLM pool answers.
        assert reply.headers["x-spillover-provider"] == "local"
        assert reply.parse().model == "llama-3.1-8b"
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            kill_all()
            pytest.fail(f"the demo did not stop on Ctrl-C:\n{log.read_text()}")
        output = log.read_text()
    assert f"{base}/v1" in output and "sk-spillover-demo" in output
    assert "OpenAI(base_url=" in output
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        _port_open(p) for p in (gateway_port, openai_port, anthropic_port, pool_port)
    ):
        time.sleep(0.1)
    assert not any(
        _port_open(p) for p in (gateway_port, openai_port, anthropic_port, pool_port, pool_port + 1)
    )


def test_the_manage_keys_walkthrough_runs_on_the_demo(tmp_path: Path) -> None:
    """docs/keys.md's commands, as written, against `spillover demo` (what `make run`
    starts) — only the port is this test's."""
    gateway_port, openai_port, anthropic_port, pool_port, _ = free_ports(5, consecutive=True)
    log = tmp_path / "demo.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", str(gateway_port),
         "--openai-port", str(openai_port), "--anthropic-port", str(anthropic_port),
         "--pool-port", str(pool_port)],
        cwd=tmp_path,  # the demo's ledger (and so its keyring) is new
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{gateway_port}"
    try:
        deadline = time.monotonic() + 30
        while "Ctrl-C stops everything" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        page = (ROOT / "docs" / "keys.md").read_text()
        walkthrough = page.split("```bash\n", 1)[1].split("```", 1)[0]
        script = walkthrough.replace("http://127.0.0.1:4000", base)
        script = script.replace(".venv/bin/spillover", f"{ROOT}/.venv/bin/spillover")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script + '\necho "key=$KEY"'],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "SPILLOVER_GATEWAY": base},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert '"chat.completion"' in done.stdout  # the curl call, served with the new key
        assert "growth-app: $" in done.stdout  # its spend
        assert "key create" in done.stdout  # the audit (before the revocation)
        key = done.stdout.rsplit("key=", 1)[1].strip()
        assert key.startswith("sk-spill-")
        refused = httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert refused.status_code == 401
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
