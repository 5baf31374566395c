"""OpenTelemetry traces end to end: a gateway exporting OTLP/HTTP to a small receiver in this
test. A client's `traceparent` is the parent of the request's span; a failover shows as two
attempt spans under it, the failed one marked; the upstream that answered got the trace in
its own `traceparent`; the ledger row and the log lines carry the trace id."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.pool import start_sim, wait_ready
from tests.support.processes import (
    GATEWAY_KEY,
    MockUpstream,
    failover_config,
    free_port,
    start_gateway,
)

pytestmark = pytest.mark.e2e


class Receiver:
    """An OTLP/HTTP traces endpoint that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Any] = []
        received = self.spans

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                export = ExportTraceServiceRequest.FromString(body)
                for resource in export.resource_spans:
                    for scope in resource.scope_spans:
                        received.extend(scope.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans_of(self, trace_id: str, count: int, timeout_s: float = 10) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [s for s in self.spans if s.trace_id.hex() == trace_id]
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{len(self.spans)} spans, none enough of trace {trace_id}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _attributes(span: Any) -> dict[str, Any]:
    out = {}
    for kv in span.attributes:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value"))
    return out


def test_a_failover_is_one_trace_with_two_attempt_spans(
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    receiver: Receiver,
    logs_dir: Path,
    tmp_path: Path,
) -> None:
    ledger = tmp_path / "ledger.sqlite"
    config = failover_config(openai_upstream.port, anthropic_upstream.port) + (
        f'ledger: {{url: "sqlite:///{ledger}", flush_ms: 50}}\n'
        "server: {log_format: json}\n"
        f"tracing: {{otlp_endpoint: 'http://127.0.0.1:{receiver.port}/v1/traces', "
        "export_every_ms: 100}\n"
    )
    proc = start_gateway(config, logs_dir, name="tracing")
    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    try:
        openai_upstream.configure(error_rate=1.0, error_status=500)
        reply = httpx.post(
            proc.url + "/v1/chat/completions",
            json={"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {GATEWAY_KEY}", "x-request-id": "traced-1",
                     "traceparent": f"00-{trace_id}-{client_span}-01"},
        )  # fmt: skip
        assert reply.status_code == 200 and reply.headers["x-spillover-provider"] == "claude"
        attempts = int(reply.headers["x-spillover-attempts"])
        spans = receiver.spans_of(trace_id, 1 + attempts)
    finally:
        proc.stop()
    [request] = [s for s in spans if s.parent_span_id.hex() == client_span]
    assert request.name == "chat chat" and request.kind == request.SPAN_KIND_SERVER
    seen = _attributes(request)
    assert seen["gen_ai.operation.name"] == "chat" and seen["gen_ai.request.model"] == "chat"
    assert seen["gen_ai.response.model"] == "claude-sonnet-4-5"
    assert seen["gen_ai.provider.name"] == "anthropic" and seen["spillover.fallback"] is True
    assert seen["gen_ai.usage.input_tokens"] > 0 and seen["gen_ai.usage.output_tokens"] > 0
    reasons = [v.string_value for v in seen["gen_ai.response.finish_reasons"].values]
    assert reasons in (["stop"], ["length"])
    assert seen["spillover.route"] == "chat" and seen["http.response.status_code"] == 200
    children = [s for s in spans if s.parent_span_id == request.span_id]
    assert len(children) == attempts >= 2
    ordered = sorted(children, key=lambda s: s.start_time_unix_nano)
    first, last = ordered[0], ordered[-1]
    assert _attributes(first)["gen_ai.provider.name"] == "openai"
    assert _attributes(first)["error.type"] == "upstream_error"
    assert first.status.code == first.status.STATUS_CODE_ERROR
    assert _attributes(last)["spillover.target"] == "claude/claude-sonnet-4-5"
    assert _attributes(last)["server.address"] == "127.0.0.1"
    # The upstream that answered was called within its attempt's span.
    sent = anthropic_upstream.received()[-1]["headers"]["traceparent"]
    assert sent == f"00-{trace_id}-{last.span_id.hex()}-01"
    with sqlite3.connect(ledger) as db:
        query = "SELECT trace_id FROM spillover_ledger WHERE client_request_id = 'traced-1'"
        assert db.execute(query).fetchall() == [(trace_id,)]
    lines = [json.loads(line) for line in proc.output().splitlines() if line.strip()]
    mine = [o for o in lines if o.get("request_id") == reply.headers["x-request-id"]]
    assert mine and all(o["trace_id"] == trace_id for o in mine)


def test_without_tracing_no_trace_goes_upstream(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, logs_dir: Path
) -> None:
    proc = start_gateway(
        failover_config(openai_upstream.port, anthropic_upstream.port), logs_dir, "untraced"
    )
    try:
        reply = httpx.post(
            proc.url + "/v1/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {GATEWAY_KEY}",
                     "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"},
        )  # fmt: skip
        assert reply.status_code == 200
    finally:
        proc.stop()
    assert "traceparent" not in openai_upstream.received()[-1]["headers"]


def test_a_pool_request_shows_its_admission_wait_under_its_attempt(
    receiver: Receiver, logs_dir: Path
) -> None:
    sim = start_sim(logs_dir, "traced-sim")
    config = (
        "providers:\n"
        "  local:\n"
        "    kind: vllm_pool\n"
        "    model: tiny-llama\n"
        f'    replicas: ["{sim.url}"]\n'
        "    health: {every_s: 0.5}\n"
        "routes:\n"
        "  pool: {targets: [{provider: local, model: tiny-llama}]}\n"
        'keys:\n  - {name: tests, key: "${TEST_GATEWAY_KEY}"}\n'
        f"tracing: {{otlp_endpoint: 'http://127.0.0.1:{receiver.port}/v1/traces', "
        "export_every_ms: 100}\n"
    )
    proc = start_gateway(config, logs_dir, name="traced-pool")
    trace_id = secrets.token_hex(16)
    try:
        wait_ready(proc, sim.url)
        reply = httpx.post(
            proc.url + "/v1/chat/completions",
            json={"model": "pool", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {GATEWAY_KEY}",
                     "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        )  # fmt: skip
        assert reply.status_code == 200
        spans = receiver.spans_of(trace_id, 3)
    finally:
        proc.stop()
        sim.stop()
    by_name = {s.name: s for s in spans}
    attempt, admission = by_name["chat tiny-llama"], by_name["spillover.pool.admission"]
    assert admission.parent_span_id == attempt.span_id
    assert _attributes(admission)["spillover.pool"] == "local"
    assert _attributes(admission)["server.address"] == "127.0.0.1"
    assert _attributes(attempt)["gen_ai.provider.name"] == "vllm_pool"
