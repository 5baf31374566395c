"""`spillover demo` (what `make run` starts): up with no keys, answers the official SDK,
fails over when the mock primary breaks, and Ctrl-C stops everything it started."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from gateway.probe import wait_ready
from tests.conftest import ROOT, free_ports

pytestmark = pytest.mark.e2e


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_demo_serves_fails_over_and_stops_on_ctrl_c() -> None:
    gateway_port, openai_port, anthropic_port = free_ports(3)
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
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{gateway_port}"
    try:
        if not wait_ready(base + "/health/ready", 30, alive=lambda: process.poll() is None):
            process.kill()
            pytest.fail(f"the demo did not come up:\n{process.communicate()[0]}")
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
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            pytest.fail(f"the demo did not stop on Ctrl-C:\n{output}")
    assert f"{base}/v1" in output and "sk-spillover-demo" in output
    assert "OpenAI(base_url=" in output
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        _port_open(p) for p in (gateway_port, openai_port, anthropic_port)
    ):
        time.sleep(0.1)
    assert not any(_port_open(p) for p in (gateway_port, openai_port, anthropic_port))
