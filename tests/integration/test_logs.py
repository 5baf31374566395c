"""`server.log_format: json`: every line the gateway writes — its own, uvicorn's — is one
JSON object, and every line logged while serving a request carries that request's id."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import (
    GATEWAY_KEY,
    OPENAI_UPSTREAM_KEY,
    MockUpstream,
    gateway_config,
    start_gateway,
)

pytestmark = pytest.mark.e2e


def test_json_logs_carry_the_request_id_on_every_request_line(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, logs_dir: Path
) -> None:
    config = gateway_config(openai_upstream.port, anthropic_upstream.port).replace(
        "server: {max_body_bytes: 65536}",
        "server: {max_body_bytes: 65536, log_format: json, access_log: true}",
    )
    proc = start_gateway(config, logs_dir, name="json-logs")
    try:
        auth = {"Authorization": f"Bearer {GATEWAY_KEY}"}
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        ok = httpx.post(proc.url + "/v1/chat/completions", json=body,
                        headers={**auth, "x-request-id": "log-ok-1"})  # fmt: skip
        assert ok.status_code == 200
        openai_upstream.configure(error_rate=1.0, error_status=500)
        failed_over = httpx.post(proc.url + "/v1/chat/completions", json=body,
                                 headers={**auth, "x-request-id": "log-failover-1"})  # fmt: skip
        assert failed_over.headers["x-spillover-provider"] == "claude"
        time.sleep(0.3)
    finally:
        proc.stop()
    lines = [line for line in proc.output().splitlines() if line.strip()]
    objects = [json.loads(line) for line in lines]  # every line, uvicorn's included
    assert all({"ts", "level", "logger", "message"} <= set(o) for o in objects)
    assert not [o for o in objects if o["logger"] == "uvicorn.access"]  # ours is the access log
    # Keyed by the id the client sent (kept beside ours: a client's never becomes ours).
    access = {
        o["request"].get("client_request_id"): o
        for o in objects
        if o["logger"] == "spillover.access"
    }
    assert access["log-ok-1"]["request"]["status"] == 200
    assert access["log-ok-1"]["request_id"] == ok.headers["x-request-id"] != "log-ok-1"
    assert access["log-failover-1"]["request"]["provider"] == "claude"
    assert access["log-failover-1"]["request"]["attempts"] >= 2
    ours = failed_over.headers["x-request-id"]
    attempt_lines = [o for o in objects if o["logger"] == "spillover.attempt"]
    assert attempt_lines and all(o["request_id"] == ours for o in attempt_lines)
    startup = [o for o in objects if "request_id" not in o]
    assert any("ready" in o["message"] for o in startup)  # lines outside requests have none
    assert OPENAI_UPSTREAM_KEY not in proc.output() and GATEWAY_KEY not in proc.output()
