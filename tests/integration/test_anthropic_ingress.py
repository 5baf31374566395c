"""Anthropic Messages clients through the gateway, with the official `anthropic` SDK: an
Anthropic target gets the body as sent and its answer back untouched; an OpenAI-wire target
is reached through translation and answers as Anthropic would; failover crosses protocols
before the first byte; errors are the SDK's own exception types; each request has a row."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.support.ledger_rows import ledger_row
from tests.support.processes import (
    GATEWAY_KEY,
    MockUpstream,
    Proc,
    reset_routing,
    start_gateway,
)

pytestmark = pytest.mark.e2e

GRAMMAR = re.compile(
    r"message_start content_block_start ping( content_block_delta)+ content_block_stop"
    r"( content_block_start( content_block_delta)+ content_block_stop)*"
    r" message_delta message_stop"
)
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def _config(openai_port: int, anthropic_port: int, ledger: Path) -> str:
    return textwrap.dedent(f"""\
        server: {{max_body_bytes: 65536}}
        ledger: {{url: "sqlite:///{ledger}", flush_ms: 50}}
        providers:
          primary: {{kind: openai, api_base: "http://127.0.0.1:{openai_port}/v1"}}
          claude: {{kind: anthropic, api_base: "http://127.0.0.1:{anthropic_port}"}}
        routes:
          claude-native:
            targets: [{{provider: claude, model: claude-sonnet-4-5}}]
          gpt-translated:
            targets: [{{provider: primary, model: gpt-4o}}]
          gpt5-translated:
            targets: [{{provider: primary, model: gpt-5}}]
          claude-then-gpt:
            targets: [{{provider: claude, model: claude-sonnet-4-5}}, {{provider: primary, model: gpt-4o}}]
          claude-then-gpt-drop:
            targets: [{{provider: claude, model: claude-sonnet-4-5}}, {{provider: primary, model: gpt-4o}}]
            untranslatable: drop
          one-per-minute:
            targets: [{{provider: claude, model: claude-sonnet-4-5}}]
            limits: {{rpm: 1}}
        keys:
          - {{name: tests, team: qa, key: "${{TEST_GATEWAY_KEY}}"}}
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true, routes: []}}
        """)  # fmt: skip


@pytest.fixture(scope="module")
def ingress_gateway(
    openai_upstream_proc: MockUpstream,
    anthropic_upstream_proc: MockUpstream,
    logs_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Proc, Path]]:
    ledger = tmp_path_factory.mktemp("anthropic-ingress") / "ledger.sqlite"
    config = _config(openai_upstream_proc.port, anthropic_upstream_proc.port, ledger)
    proc = start_gateway(config, logs_dir, name="anthropic-ingress")
    yield proc, ledger
    proc.stop()


@pytest.fixture
def gw(
    ingress_gateway: tuple[Proc, Path],
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
) -> Proc:
    reset_routing(ingress_gateway[0])
    return ingress_gateway[0]


def _client(gw: Proc, **kwargs: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gw.url, api_key=kwargs.pop("api_key", GATEWAY_KEY), max_retries=0, **kwargs
    )


def _events(gw: Proc, body: dict[str, Any], request_id: str = "") -> list[tuple[str, str]]:
    """The raw stream as (event name, data) pairs."""
    headers = {"x-api-key": GATEWAY_KEY, "anthropic-version": "2023-06-01"}
    if request_id:
        headers["x-request-id"] = request_id
    with httpx.stream(
        "POST", gw.url + "/v1/messages", json={**body, "stream": True}, headers=headers, timeout=10
    ) as response:
        assert response.status_code == 200
        text = response.read().decode()
    pairs = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        pairs.append((lines["event"], lines["data"]))
    return pairs


def test_an_anthropic_target_gets_the_body_as_sent_and_its_answer_back(
    gw: Proc, anthropic_upstream: MockUpstream, ingress_gateway: tuple[Proc, Path]
) -> None:
    system = [{"type": "text", "text": "Be terse. " * 50, "cache_control": {"type": "ephemeral"}}]
    thinking = {
        "type": "thinking",
        "thinking": "The user greets.",
        "signature": "EqQBCkYIBRgCKkD+/=",
    }
    messages: list[Any] = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [thinking, {"type": "text", "text": "Hello."}]},
        {"role": "user", "content": [{"type": "text", "text": "and now?"}]},
    ]
    raw = _client(gw).messages.with_raw_response.create(
        model="claude-native", max_tokens=32, system=system, messages=messages,
        metadata={"user_id": "u-42"}, extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
        extra_body={"top_k": 5, "a_field_from_the_future": {"x": 1}},
    )  # fmt: skip
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert raw.headers["x-spillover-provider"] == "claude" and raw.headers["request-id"]
    received = anthropic_upstream.received()[-1]
    # Byte for byte but the model: cache_control, the thinking signature, unknown fields.
    assert received["body"]["model"] == "claude-sonnet-4-5"
    assert received["body"]["system"] == system and received["body"]["messages"] == messages
    assert received["body"]["top_k"] == 5 and received["body"]["a_field_from_the_future"] == {
        "x": 1
    }
    assert received["headers"]["anthropic-beta"] == "context-1m-2025-08-07"
    assert GATEWAY_KEY not in str(received["headers"])  # the client's key never goes up
    row = ledger_row(ingress_gateway[1], raw.headers["x-request-id"])
    assert (row["ingress"], row["provider"], row["status"]) == ("anthropic", "claude", 200)
    assert row["prompt_tokens"] == message.usage.input_tokens + (
        message.usage.cache_read_input_tokens or 0
    ) + (message.usage.cache_creation_input_tokens or 0)


def test_an_openai_wire_target_answers_as_anthropic_would(
    gw: Proc, openai_upstream: MockUpstream, ingress_gateway: tuple[Proc, Path]
) -> None:
    raw = _client(gw).messages.with_raw_response.create(
        model="gpt-translated", max_tokens=16, system="Be brief.",
        messages=[{"role": "user", "content": "hello"}], stop_sequences=["END"], extra_body={"temperature": 0.3},
    )  # fmt: skip
    message = raw.parse()
    assert message.id.startswith("msg_") and message.model == "gpt-4o"
    assert message.stop_reason in ("end_turn", "max_tokens") and message.content[0].text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    sent = openai_upstream.received()[-1]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["messages"][0]["role"] == "system" and sent["body"]["stop"] == ["END"]
    row = ledger_row(ingress_gateway[1], raw.headers["x-request-id"])
    assert (row["ingress"], row["provider"], row["status"]) == ("anthropic", "primary", 200)
    assert row["completion_tokens"] == message.usage.output_tokens


@pytest.mark.parametrize("route", ["claude-native", "gpt-translated"])
def test_streams_follow_anthropics_event_sequence(gw: Proc, route: str) -> None:
    body = {"model": route, "max_tokens": 16, "messages": [{"role": "user", "content": "count"}]}
    events = _events(gw, body)
    names = " ".join(name for name, _ in events)
    assert GRAMMAR.fullmatch(names), names
    with _client(gw).messages.stream(**body) as stream:  # type: ignore[arg-type]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text  # type: ignore[union-attr]
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    assert final.stop_reason in ("end_turn", "max_tokens")


@pytest.mark.parametrize("route", ["claude-native", "gpt-translated"])
def test_tool_use_round_trip_streamed(gw: Proc, route: str) -> None:
    client = _client(gw)
    question = {"role": "user", "content": "Weather in Oslo?"}
    with client.messages.stream(
        model=route, max_tokens=64, tools=[WEATHER], tool_choice={"type": "any"},  # type: ignore[list-item]
        messages=[question],  # type: ignore[list-item]
    ) as stream:  # fmt: skip
        final = stream.get_final_message()
    call = next(b for b in final.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": call.input["city"]}  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    answer = client.messages.create(
        model=route, max_tokens=16, tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            question,  # type: ignore[list-item]
            {"role": "assistant", "content": final.content},  # type: ignore[typeddict-item]
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "12°C", "is_error": False}]},
        ],
    )  # fmt: skip
    assert answer.stop_reason != "tool_use" and answer.content[0].type == "text"


def test_count_tokens(gw: Proc) -> None:
    client = _client(gw)
    short = client.messages.count_tokens(
        model="claude-native", messages=[{"role": "user", "content": "hi"}]
    )
    long = client.messages.count_tokens(
        model="claude-native", system="You are a careful assistant. " * 40,
        messages=[{"role": "user", "content": "hi"}], tools=[WEATHER],  # type: ignore[list-item]
    )  # fmt: skip
    assert 0 < short.input_tokens < long.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "hi"}])


def test_every_error_is_the_sdks_own_exception(
    gw: Proc, anthropic_upstream: MockUpstream, openai_upstream: MockUpstream
) -> None:
    hi: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(anthropic.AuthenticationError) as auth:
        _client(gw, api_key="sk-wrong").messages.create(
            model="claude-native", max_tokens=5, messages=hi
        )
    assert auth.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    bearer = anthropic.Anthropic(base_url=gw.url, auth_token=GATEWAY_KEY, max_retries=0)
    assert bearer.messages.create(model="claude-native", max_tokens=5, messages=hi).content
    with pytest.raises(anthropic.NotFoundError):
        _client(gw).messages.create(model="no-such-model", max_tokens=5, messages=hi)
    with pytest.raises(anthropic.BadRequestError) as bad:
        _client(gw).messages.create(model="claude-native", max_tokens=0, messages=hi)
    assert "max_tokens" in bad.value.message
    with pytest.raises(anthropic.RequestTooLargeError):
        _client(gw).messages.create(
            model="claude-native", max_tokens=5, messages=[{"role": "user", "content": "x" * 70000}]
        )
    _client(gw).messages.create(model="one-per-minute", max_tokens=5, messages=hi)
    with pytest.raises(anthropic.RateLimitError) as limited:
        _client(gw).messages.create(model="one-per-minute", max_tokens=5, messages=hi)
    assert int(limited.value.response.headers["retry-after"]) >= 1
    anthropic_upstream.configure(error_rate=1.0, error_status=503)
    openai_upstream.configure(error_rate=1.0, error_status=503)
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        _client(gw).messages.create(model="claude-then-gpt", max_tokens=5, messages=hi)
    assert overloaded.value.status_code == 529 and overloaded.value.request_id


def test_a_stream_broken_after_its_first_byte_ends_with_an_error_event(
    gw: Proc, anthropic_upstream: MockUpstream, openai_upstream: MockUpstream
) -> None:
    anthropic_upstream.configure(cut_after=4, output_tokens=40)
    openai_upstream.configure(cut_after=4, output_tokens=40)
    body = {"model": "", "max_tokens": 64, "messages": [{"role": "user", "content": "talk"}]}
    for route in ("claude-native", "gpt-translated"):
        events = _events(gw, {**body, "model": route})
        assert events[0][0] == "message_start" and events[-1][0] == "error", events
        assert '"type":"api_error"' in events[-1][1]
        stream = _client(gw).messages.stream(**{**body, "model": route})  # type: ignore[arg-type]
        with pytest.raises(anthropic.APIStatusError), stream as events_seen:  # never a silent end
            for _ in events_seen:
                pass


def test_failover_crosses_protocols_before_the_first_byte(
    gw: Proc, anthropic_upstream: MockUpstream, ingress_gateway: tuple[Proc, Path]
) -> None:
    anthropic_upstream.configure(error_rate=1.0, error_status=529)
    client = _client(gw)
    raw = client.messages.with_raw_response.create(
        model="claude-then-gpt", max_tokens=16, messages=[{"role": "user", "content": "hello"}]
    )
    assert raw.headers["x-spillover-provider"] == "primary"
    assert raw.parse().content[0].type == "text"
    body = {"model": "claude-then-gpt", "max_tokens": 16,
            "messages": [{"role": "user", "content": "hello"}]}  # fmt: skip
    streamed = _events(gw, body, request_id="cross-protocol-stream")
    assert GRAMMAR.fullmatch(" ".join(name for name, _ in streamed))
    for request_id in (raw.headers["x-request-id"], "cross-protocol-stream"):
        row = ledger_row(ingress_gateway[1], request_id)
        assert (row["ingress"], row["provider"], row["fell_back"]) == ("anthropic", "primary", 1)


def test_what_a_translated_target_cannot_carry_is_refused_or_dropped_as_the_route_says(
    gw: Proc, anthropic_upstream: MockUpstream, openai_upstream: MockUpstream
) -> None:
    anthropic_upstream.configure(error_rate=1.0, error_status=503)
    document = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "x"},
    }
    messages: Any = [{"role": "user", "content": [document, {"type": "text", "text": "summarise"}]}]
    with pytest.raises(anthropic.BadRequestError) as refused:  # no target can take it
        _client(gw).messages.create(model="gpt-translated", max_tokens=8, messages=messages)
    assert "messages[0].content[0] (document)" in refused.value.message
    assert "untranslatable: reject" in refused.value.message
    with pytest.raises(anthropic.OverloadedError) as down:  # the one that could is down
        _client(gw).messages.create(model="claude-then-gpt", max_tokens=8, messages=messages)
    assert "cannot carry messages[0].content[0] (document)" in down.value.message
    assert openai_upstream.count("/v1/chat/completions") == 0  # never sent without it
    raw = _client(gw).messages.with_raw_response.create(
        model="claude-then-gpt-drop", max_tokens=8, messages=messages
    )
    assert raw.headers["x-spillover-dropped"] == "messages[0].content[0] (document)"
    assert raw.parse().content[0].type == "text"
    metrics = httpx.get(gw.url + "/metrics").text
    assert (
        'spillover_translation_dropped_total{ingress="anthropic",route="claude-then-gpt-drop",what="block"}'
        in metrics
    )
    assert (
        'spillover_requests_total{endpoint="chat",ingress="anthropic",route="claude-then-gpt-drop",status="200"}'
        in metrics
    )


def test_hostile_input_gets_anthropic_errors_never_a_500(gw: Proc) -> None:
    headers = {"x-api-key": GATEWAY_KEY, "content-type": "application/json"}
    cases: list[Any] = [
        b"not json", b"[]", b'{"model": 1}',
        b'{"model": "claude-native", "max_tokens": 5, "messages": "hi"}',
        b'{"model": "claude-native", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": 3}]}]}',
        b'{"model": "claude-native", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}',
        b'{"model": "claude-native", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "tool"}}',
        b'{"model": "claude-native", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "thinking": {"type": "enabled"}}',
    ]  # fmt: skip
    for body in cases:
        reply = httpx.post(gw.url + "/v1/messages?beta=true", content=body, headers=headers)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["type"] == "error"
        assert reply.json()["error"]["type"] == "invalid_request_error"
    reply = httpx.get(gw.url + "/v1/messages", headers=headers)
    assert reply.status_code == 405 and reply.headers["allow"] == "POST"
    bad_beta = {**headers, "anthropic-beta": "x" * 2000}
    body = b'{"model": "claude-native", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}'
    assert httpx.post(gw.url + "/v1/messages", content=body, headers=bad_beta).status_code == 400


def test_thinking_blocks_and_their_signatures_pass_through_both_ways(
    gw: Proc, anthropic_upstream: MockUpstream, openai_upstream: MockUpstream
) -> None:
    client = _client(gw)
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    question: Any = {"role": "user", "content": "Think first."}
    body = {"model": "claude-native", "max_tokens": 2048, "thinking": thinking,
            "messages": [question]}  # fmt: skip
    deltas = [
        _delta_type(data) for name, data in _events(gw, body) if name == "content_block_delta"
    ]
    assert "thinking_delta" in deltas and "signature_delta" in deltas
    with client.messages.stream(**body) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    thought = final.content[0]
    assert thought.type == "thinking" and thought.signature  # type: ignore[union-attr]
    client.messages.create(
        model="claude-native", max_tokens=2048, thinking=thinking,
        messages=[question, {"role": "assistant", "content": final.content},  # type: ignore[typeddict-item]
                  {"role": "user", "content": "Go on."}],
    )  # fmt: skip
    echoed = anthropic_upstream.received()[-1]["body"]["messages"][1]["content"][0]
    assert echoed == {"type": "thinking", "thinking": thought.thinking,  # type: ignore[union-attr]
                      "signature": thought.signature}  # type: ignore[union-attr]  # fmt: skip
    # An OpenAI-wire target cannot think Anthropic's way: the setting is advisory, so the
    # answer comes without it, and says so.
    raw = client.messages.with_raw_response.create(**{**body, "model": "gpt-translated"})  # type: ignore[arg-type]
    assert raw.headers["x-spillover-dropped"] == "thinking"
    assert raw.parse().content[0].type == "text"
    assert "reasoning_effort" not in openai_upstream.received()[-1]["body"]
    # A target that reasons (gpt-5, as litellm's map says) gets the thinking as its effort.
    raw = client.messages.with_raw_response.create(**{**body, "model": "gpt5-translated"})  # type: ignore[arg-type]
    assert "x-spillover-dropped" not in raw.headers
    assert openai_upstream.received()[-1]["body"]["reasoning_effort"] == "low"  # 1,024 tokens


def _delta_type(data: str) -> str:
    """The delta type of a content_block_delta event's data."""
    return str(json.loads(data)["delta"]["type"])
