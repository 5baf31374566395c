"""Traces in process, read from the OpenTelemetry SDK's in-memory exporter: a failover is one
server span with two attempt spans under it (the failed one marked), with the GenAI semantic
conventions and Spillover's attributes; a client's traceparent is the parent; with the
gateway stopped nothing is traced any more. (tests/integration/test_tracing.py runs the real
OTLP/HTTP exporter against a receiver.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway import tracing
from gateway.errors import Overloaded
from tests.support.inprocess import FakeProvider, FakeStream, completion, running

ROUTES = """\
  chat:
    targets:
      - {provider: primary, model: m1}
      - {provider: backup, model: m2}
"""
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class FinishingStream(FakeStream):
    """The fake stream with the chunk OpenAI ends a capped answer with."""

    async def _events(self) -> AsyncIterator[bytes]:
        async for event in super()._events():
            if event == b"data: [DONE]\n\n":
                last = {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
                yield b"data: " + orjson.dumps(last) + b"\n\n"
            yield event


async def test_a_failover_is_one_trace_with_two_attempt_spans(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    primary = FakeProvider("primary", [Overloaded("busy", status=503)])
    sent: list[str] = []

    def answer(_call: object) -> object:
        sent.append(tracing.traced({})["traceparent"])  # what an HTTP provider would send
        return completion("ok", prompt_tokens=11, completion_tokens=3)

    backup = FakeProvider("backup", [answer])
    providers = {"primary": primary, "backup": backup}
    async with running(tmp_path, ROUTES, providers, span_exporter=exporter) as gw:
        reply = await gw.client.post(
            "/v1/chat/completions", json=CHAT, headers={"traceparent": PARENT}
        )
    assert reply.status_code == 200
    assert tracing.ENABLED is False  # the stopped gateway traces nothing more
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind == SpanKind.SERVER]
    attempts = sorted(
        (s for s in spans if s.kind == SpanKind.CLIENT), key=lambda s: s.start_time or 0
    )
    assert f"{server.context.trace_id:032x}" == PARENT.split("-")[1]
    assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT.split("-")[2]
    assert server.name == "chat chat"
    attributes = dict(server.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "chat"
    assert attributes["gen_ai.response.model"] == "m2"
    assert attributes["spillover.target"] == "backup/m2"
    assert attributes["spillover.fallback"] is True
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (
        11,
        3,
    )
    assert [a.name for a in attempts] == ["chat m1", "chat m2"]
    assert all(
        a.parent is not None and a.parent.span_id == server.context.span_id for a in attempts
    )
    failed, answered = attempts
    assert failed.status.status_code == StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "overloaded"
    assert answered.status.status_code != StatusCode.ERROR
    assert dict(answered.attributes or {})["gen_ai.provider.name"] == "openai"
    # The answering upstream got its own attempt's context, not the client's.
    [traceparent] = sent
    assert traceparent.split("-")[1] == PARENT.split("-")[1]
    assert traceparent.split("-")[2] == f"{answered.context.span_id:016x}"


async def test_a_stream_is_traced_to_its_first_event_and_billed_on_the_request(
    tmp_path: Path,
) -> None:
    exporter = InMemorySpanExporter()
    primary = FakeProvider("primary", [FinishingStream(["a", "b", "c"], prompt_tokens=4)])
    async with running(tmp_path, ROUTES, {"primary": primary, "backup": FakeProvider("backup")},
                       span_exporter=exporter) as gw:  # fmt: skip
        reply = await gw.client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert reply.status_code == 200 and "data: [DONE]" in reply.text
    spans = exporter.get_finished_spans()
    [server] = [s for s in spans if s.kind == SpanKind.SERVER]
    [attempt] = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert dict(server.attributes or {})["gen_ai.usage.output_tokens"] == 3
    assert dict(server.attributes or {})["spillover.fallback"] is False
    assert dict(server.attributes or {})["gen_ai.response.finish_reasons"] == ("length",)
    assert attempt.status.status_code != StatusCode.ERROR


async def test_an_unsampled_request_makes_no_span_and_passes_its_trace_on(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    sent: list[str] = []

    def answer(_call: object) -> object:
        sent.append(tracing.traced({})["traceparent"])
        return completion("ok")

    providers = {"primary": FakeProvider("primary", [answer]), "backup": FakeProvider("backup")}
    unsampled = PARENT[:-2] + "00"  # the client's trace, not sampled
    async with running(tmp_path, ROUTES, providers, span_exporter=exporter) as gw:
        reply = await gw.client.post(
            "/v1/chat/completions", json=CHAT, headers={"traceparent": unsampled}
        )
    assert reply.status_code == 200
    assert exporter.get_finished_spans() == ()
    [traceparent] = sent  # the upstream still learns the trace, and that it is not sampled
    assert traceparent.split("-")[1] == PARENT.split("-")[1]
    assert traceparent.endswith("-00")
