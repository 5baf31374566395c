"""The gateway as a real process, mock upstreams as real processes, the official `openai`
SDK as the client: what an application team sees after changing only its base URL."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.support.processes import (
    ADMIN_KEY,
    ANTHROPIC_UPSTREAM_KEY,
    GATEWAY_KEY,
    OPENAI_UPSTREAM_KEY,
    MockUpstream,
    Proc,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(gateway: Proc) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=20
    )


def test_chat_round_trip_and_trace_headers(
    client: openai.OpenAI, openai_upstream: MockUpstream
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hello"}],
        max_tokens=5,
        extra_headers={"x-request-id": "req-abc-123"},
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello tok1 tok2 tok3 tok4"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    assert raw.headers["x-client-request-id"] == "req-abc-123"  # theirs, echoed
    assert raw.headers["x-request-id"] != "req-abc-123"  # ours: a client's id never is
    assert raw.headers["x-spillover-route"] == "gpt-4o"
    assert raw.headers["x-spillover-provider"] == "primary"
    assert raw.headers["x-spillover-model"] == "gpt-4o"
    assert raw.headers["x-spillover-attempts"] == "1"


def test_body_forwarded_untouched_except_model(
    client: openai.OpenAI, openai_upstream: MockUpstream
) -> None:
    client.chat.completions.create(
        model="only-primary",
        messages=[{"role": "user", "content": "hi"}],
        temperature=0.3,
        extra_body={"brand_new_param": {"nested": [1, 2]}, "seed": 7},
    )
    sent = openai_upstream.received()[-1]
    assert sent["body"]["model"] == "gpt-4o-mini"
    assert sent["body"]["brand_new_param"] == {"nested": [1, 2]}
    assert sent["body"]["seed"] == 7 and sent["body"]["temperature"] == 0.3
    # The upstream sees the provider's key, never the client's virtual key.
    assert sent["headers"]["authorization"] == f"Bearer {OPENAI_UPSTREAM_KEY}"
    assert GATEWAY_KEY not in json.dumps(sent)


def test_stream_with_include_usage(client: openai.OpenAI, openai_upstream: MockUpstream) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello tok1 tok2 tok3 "
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_stream_without_usage_sees_exactly_what_it_asked(
    gateway: Proc, openai_upstream: MockUpstream
) -> None:
    body = {
        "model": "gpt-4o",
        "stream": True,
        "max_tokens": 3,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream(
        "POST",
        gateway.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data:")]
    assert events[-1] == "data: [DONE]"
    payloads = [json.loads(e[5:]) for e in events[:-1]]
    assert all("usage" not in p for p in payloads)
    assert all(p["choices"] for p in payloads)
    # Upstream was asked for usage anyway, so the gateway can account for the tokens.
    assert openai_upstream.received()[-1]["body"]["stream_options"] == {"include_usage": True}
    metrics = httpx.get(gateway.url + "/metrics").text
    assert (
        'spillover_tokens_total{kind="completion",model="gpt-4o",provider="primary",'
        'route="gpt-4o"}' in metrics
    )


def test_tools_round_trip(client: openai.OpenAI, openai_upstream: MockUpstream) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    messages: list[dict[str, object]] = [{"role": "user", "content": "Weather in Oslo?"}]
    first = client.chat.completions.create(
        model="gpt-4o",
        messages=messages,  # type: ignore[arg-type]
        tools=tools,
    )  # type: ignore[arg-type]
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "sample"}  # type: ignore[union-attr]
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    second = client.chat.completions.create(
        model="gpt-4o",
        messages=messages,  # type: ignore[arg-type]
        tools=tools,
    )  # type: ignore[arg-type]
    assert second.choices[0].message.content
    assert openai_upstream.received()[-1]["body"]["messages"][-1]["tool_call_id"] == call.id


def test_streamed_tool_call_arguments_reassemble(
    client: openai.OpenAI, openai_upstream: MockUpstream
) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {
                    "type": "object",
                    "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                    "required": ["query", "limit"],
                },
            },
        }
    ]
    stream = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "find"}],
        tools=tools,  # type: ignore[arg-type]
        stream=True,
    )
    arguments = ""
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            arguments += call.function.arguments or ""  # type: ignore[union-attr]
    assert json.loads(arguments) == {"query": "sample", "limit": 1}


def test_embeddings_default_base64_and_float(
    client: openai.OpenAI, openai_upstream: MockUpstream
) -> None:
    # The SDK asks for base64 by default and decodes it; the first target (Anthropic) has
    # no embeddings endpoint and is skipped.
    raw = client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["alpha", "beta"]
    )
    result = raw.parse()
    assert len(result.data) == 2 and len(result.data[0].embedding) == 8
    assert raw.headers["x-spillover-provider"] == "primary"
    assert raw.headers["x-spillover-attempts"] == "2"
    floats = client.embeddings.create(
        model="text-embedding-3-small", input="alpha", encoding_format="float"
    )
    assert floats.data[0].embedding == pytest.approx(result.data[0].embedding, abs=1e-5)


def test_legacy_completions(client: openai.OpenAI, openai_upstream: MockUpstream) -> None:
    completion = client.completions.create(model="only-primary", prompt="Say", max_tokens=3)
    assert completion.choices[0].text == "Hello tok1 tok2 "
    stream = client.completions.create(
        model="only-primary", prompt="Say", max_tokens=2, stream=True
    )
    assert "".join(c.choices[0].text for c in stream if c.choices) == "Hello tok1 "


def test_models_lists_only_the_keys_routes(client: openai.OpenAI) -> None:
    names = {m.id for m in client.models.list()}
    assert names == {"gpt-4o", "only-primary", "claude-first", "text-embedding-3-small"}


def test_openai_client_reaches_anthropic_upstream(
    client: openai.OpenAI, anthropic_upstream: MockUpstream
) -> None:
    completion = client.chat.completions.create(
        model="claude-first",
        max_tokens=3,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    )
    assert completion.choices[0].message.content == "Hello tok1 tok2"
    assert completion.choices[0].finish_reason == "length"
    sent = anthropic_upstream.received()[-1]
    assert sent["headers"]["x-api-key"] == ANTHROPIC_UPSTREAM_KEY
    assert sent["body"]["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["body"]["model"] == "claude-sonnet-4-5"
    stream = client.chat.completions.create(
        model="claude-first",
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "hi"}],
    )
    chunks = list(stream)
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello tok1 tok2 "
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


# --- errors in the client's protocol -------------------------------------------------


def test_missing_and_wrong_key_are_401(gateway: Proc) -> None:
    bad = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"
    response = httpx.post(gateway.url + "/v1/chat/completions", json={})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_unknown_and_forbidden_model_are_404(client: openai.OpenAI) -> None:
    for model in ("no-such-model", "secret-route"):
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
        assert info.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o", "messages": "not a list"}, "messages"),
        ({"model": "gpt-4o", "messages": []}, "messages"),
        (
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1},
            "max_tokens",
        ),
        (
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
            "temperature",
        ),
        ({"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ],
)
def test_invalid_parameters_are_400_and_never_reach_upstream(
    client: openai.OpenAI, openai_upstream: MockUpstream, body: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.post("/chat/completions", body=body, cast_to=httpx.Response)
    assert info.value.status_code == 400
    assert info.value.param == param
    assert openai_upstream.count("/v1/chat/completions") == 0


def test_malformed_json_and_bad_utf8_are_400(gateway: Proc) -> None:
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}", "Content-Type": "application/json"}
    for raw, expected in (
        (b'{"model": "gpt-4o", ', "not valid JSON"),
        (b'{"model": "gpt-4o\xff"}', "not valid UTF-8"),
    ):
        response = httpx.post(gateway.url + "/v1/chat/completions", content=raw, headers=headers)
        assert response.status_code == 400
        error = response.json()["error"]
        assert expected in error["message"]
        assert set(error) >= {"message", "type", "param", "code"}


def test_body_over_limit_is_413(gateway: Proc, openai_upstream: MockUpstream) -> None:
    big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 70_000}]}
    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        json=big,
        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"

    def chunked():  # no Content-Length: the limit is enforced while reading
        yield b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"y" * 8192
        yield b'"}]}'

    response = httpx.post(
        gateway.url + "/v1/chat/completions",
        content=chunked(),
        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
    )
    assert response.status_code == 413
    assert openai_upstream.count("/v1/chat/completions") == 0


def test_upstream_bad_request_is_the_clients_400(
    client: openai.OpenAI, openai_upstream: MockUpstream
) -> None:
    openai_upstream.configure(error_rate=1, error_status=400)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    # Not retryable: the fallback target is never asked.
    assert openai_upstream.count("/v1/chat/completions") == 1


# --- failover before the first byte --------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429, 529])
def test_failover_on_retryable_status(
    client: openai.OpenAI,
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    status: int,
) -> None:
    openai_upstream.configure(error_rate=1, error_status=status)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", max_tokens=2, messages=[{"role": "user", "content": "x"}]
    )
    assert raw.parse().choices[0].message.content == "Hello tok1"
    assert raw.headers["x-spillover-provider"] == "claude"
    assert raw.headers["x-spillover-attempts"] == "2"


def test_failover_on_reset_connection(
    client: openai.OpenAI, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> None:
    openai_upstream.configure(reset_rate=1)
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", max_tokens=2, messages=[{"role": "user", "content": "x"}]
    )
    assert raw.headers["x-spillover-provider"] == "claude"


def test_failover_when_primary_hangs(
    client: openai.OpenAI, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> None:
    openai_upstream.configure(hang_rate=1)
    stream = client.chat.completions.with_raw_response.create(
        model="gpt-4o", max_tokens=2, stream=True, messages=[{"role": "user", "content": "x"}]
    )
    assert stream.headers["x-spillover-provider"] == "claude"
    text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    assert text == "Hello tok1 "


def test_every_target_failing_lists_every_attempt(
    client: openai.OpenAI, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> None:
    openai_upstream.configure(error_rate=1, error_status=503, retry_after_s=7)
    anthropic_upstream.configure(error_rate=1, error_status=500)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503
    assert info.value.response.headers["retry-after"] == "7"
    attempts = info.value.body["attempts"]  # type: ignore[index]
    assert [(a["provider"], a["error"], a["status"]) for a in attempts] == [
        ("primary", "overloaded", 503),
        ("claude", "upstream_error", 500),
        # The default retry policy (3 attempts) comes back to claude after a backoff; the
        # primary is cooling down for its Retry-After and is not asked again.
        ("claude", "upstream_error", 500),
    ]


def test_single_target_timeout_is_504(client: openai.OpenAI, openai_upstream: MockUpstream) -> None:
    openai_upstream.configure(hang_rate=1)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(
            model="only-primary", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.status_code == 504
    assert info.value.body["attempts"][0]["error"] == "timeout"  # type: ignore[index]


# --- after the first byte: never a silent truncation ---------------------------------


def test_stream_cut_after_first_byte_ends_with_error_event(
    client: openai.OpenAI,
    gateway: Proc,
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
) -> None:
    openai_upstream.configure(cut_after=3)
    stream = client.chat.completions.create(
        model="gpt-4o", max_tokens=10, stream=True, messages=[{"role": "user", "content": "x"}]
    )
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Hello tok1 "  # what arrived before the cut, no more
    assert "stream" in info.value.message
    assert anthropic_upstream.count("/v1/messages") == 0  # no silent duplicate output
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'spillover_streams_interrupted_total{provider="primary",route="gpt-4o"}' in metrics


def test_health_and_metrics(gateway: Proc) -> None:
    assert httpx.get(gateway.url + "/health/live").json() == {"status": "ok"}
    ready = httpx.get(gateway.url + "/health/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}  # no tenants' names
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    detail = httpx.get(gateway.url + "/admin/readiness", headers=admin)
    assert detail.status_code == 200 and detail.json()["routes"]["gpt-4o"] == 2
    assert httpx.get(gateway.url + "/admin/readiness").status_code == 401
    assert httpx.get(gateway.url + "/docs").status_code == 404  # no page loading a CDN's scripts
    assert httpx.get(gateway.url + "/openapi.json").status_code == 200
    metrics = httpx.get(gateway.url + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "spillover_requests_total" in metrics.text
    assert GATEWAY_KEY not in metrics.text and OPENAI_UPSTREAM_KEY not in metrics.text


def test_the_upstream_connections_are_kept_and_shown(
    gateway: Proc, client: openai.OpenAI, openai_upstream: MockUpstream
) -> None:
    """Keep-alive at work, as an operator reads it: five requests in a row make at most one
    new connection to the upstream, leave one idle, and send nothing twice."""

    def sample(name: str, **labels: str) -> float:
        text = httpx.get(gateway.url + "/metrics").text
        wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith(name + "{") and line.split("}")[0][len(name) + 1 :] == wanted:
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"{name}{{{wanted}}} not in /metrics")

    origin = {"origin": f"http://127.0.0.1:{openai_upstream.port}", "provider": "primary"}

    def send() -> None:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )

    send()  # the session's gateway may have served others before: counted from here
    made = sample("spillover_upstream_connects_total", **origin)
    resent = sample("spillover_upstream_resends_total", **origin)
    for _ in range(5):  # one after another: each finds the last one's connection idle
        send()
    assert sample("spillover_upstream_connects_total", **origin) == made
    assert sample("spillover_upstream_resends_total", **origin) == resent
    assert sample("spillover_upstream_connections", state="idle", **origin) >= 1
