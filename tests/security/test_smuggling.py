"""Body fields never choose hosts, headers or credentials: for every provider kind, fields
that would redirect the request, add upstream headers, swap the key, switch the wire format
or fake the answer are dropped (or sent as inert body fields), never obeyed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.support.hostile import TAIL_KEY, Hostile
from tests.support.processes import ANTHROPIC_UPSTREAM_KEY, OPENAI_UPSTREAM_KEY, MockUpstream

pytestmark = pytest.mark.e2e


def _smuggled(capture: MockUpstream) -> dict[str, object]:
    evil = f"http://127.0.0.1:{capture.port}/v1"
    return {
        "base_url": evil,
        "api_base": evil,
        "api_key": "sk-client-chosen",
        "extra_headers": {"x-evil": "1", "authorization": "Bearer sk-client-chosen"},
        "headers": {"x-evil": "1"},
        "organization": "org-evil",
        "custom_llm_provider": "anthropic",
        "mock_response": "a free answer",
        "api_version": "evil",
        "num_retries": 50,
        "timeout": 0.000001,
        "litellm_params": {"api_base": evil},
        "metadata": {"x": "y"},
    }


def test_litellm_takes_no_connection_or_credential_field_from_the_body(
    hostile: Hostile, openai_upstream: MockUpstream
) -> None:
    reply = hostile.chat("tail", **_smuggled(hostile.capture))
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] != "a free answer"
    sent = openai_upstream.received()
    assert len(sent) == 1, "the configured upstream must have been called exactly once"
    headers = sent[0]["headers"]
    assert headers["authorization"] == f"Bearer {TAIL_KEY}"
    assert "x-evil" not in headers and "openai-organization" not in headers
    assert sent[0]["path"].endswith("/chat/completions")
    assert hostile.capture.received() == []


@pytest.mark.parametrize(
    "field",
    ["base_url", "api_base", "extra_headers", "custom_llm_provider", "mock_response", "api_key"],
)
def test_each_smuggled_field_alone_changes_nothing_through_litellm(
    hostile: Hostile, openai_upstream: MockUpstream, field: str
) -> None:
    reply = hostile.chat("tail", **{field: _smuggled(hostile.capture)[field]})
    assert reply.status_code == 200, reply.text
    sent = openai_upstream.received()
    assert len(sent) == 1
    assert sent[0]["headers"]["authorization"] == f"Bearer {TAIL_KEY}"
    assert field not in sent[0]["body"]
    assert hostile.capture.received() == []


def test_openai_wire_forwards_fields_as_body_never_as_host_or_header(
    hostile: Hostile, openai_upstream: MockUpstream
) -> None:
    reply = hostile.chat("openai", **_smuggled(hostile.capture))
    assert reply.status_code == 200, reply.text
    sent = openai_upstream.received()
    assert len(sent) == 1
    headers = sent[0]["headers"]
    assert headers["authorization"] == f"Bearer {OPENAI_UPSTREAM_KEY}"
    assert "x-evil" not in headers and "openai-organization" not in headers
    assert hostile.capture.received() == []


def test_anthropic_takes_no_host_header_or_key_from_the_body(
    hostile: Hostile, anthropic_upstream: MockUpstream
) -> None:
    reply = hostile.chat("claude", **_smuggled(hostile.capture))
    assert reply.status_code == 200, reply.text
    sent = anthropic_upstream.received()
    assert len(sent) == 1
    headers = sent[0]["headers"]
    assert headers["x-api-key"] == ANTHROPIC_UPSTREAM_KEY
    assert "x-evil" not in headers and "authorization" not in headers
    assert not {"base_url", "api_base", "extra_headers", "api_key"} & set(sent[0]["body"])
    assert hostile.capture.received() == []


def test_client_headers_are_never_forwarded_upstream(
    hostile: Hostile, openai_upstream: MockUpstream
) -> None:
    body = {"model": "openai", "messages": [{"role": "user", "content": "hi"}]}
    reply = hostile.post(
        "/v1/chat/completions",
        body,
        headers={"x-evil": "1", "openai-organization": "org-evil", "host": "evil.example"},
    )
    assert reply.status_code == 200
    headers = openai_upstream.received()[0]["headers"]
    assert "x-evil" not in headers and "openai-organization" not in headers
    assert headers["authorization"] == f"Bearer {OPENAI_UPSTREAM_KEY}"


@pytest.mark.parametrize(
    ("path", "fields", "param"),
    [
        ("/v1/responses", {"conversation": "conv_of_another_team"}, "conversation"),
        ("/v1/responses", {"prompt": {"id": "pmpt_of_another_team"}}, "prompt"),
        ("/v1/responses", {"tools": [{"type": "file_search",
                                      "vector_store_ids": ["vs_of_another_team"]}]}, "tools[0]"),
        ("/v1/responses", {"tools": [{"type": "mcp", "server_label": "x",
                                      "server_url": "CAPTURE", "headers": {"X-Leak": "1"}}]},
         "tools[0]"),
        ("/v1/messages", {"mcp_servers": [{"type": "url", "url": "CAPTURE", "name": "x"}]},
         "mcp_servers"),
        ("/v1/messages", {"container": "container_of_another_team"}, "container"),
    ],
)  # fmt: skip
def test_fields_reaching_the_shared_upstream_account_are_refused_unless_the_route_allows(
    hostile: Hostile, path: str, fields: dict[str, Any], param: str
) -> None:
    text = orjson.dumps(fields).decode().replace("CAPTURE", hostile.capture.url)
    body: dict[str, Any] = {"model": "claude" if path == "/v1/messages" else "openai",
                            **orjson.loads(text)}  # fmt: skip
    if path == "/v1/messages":
        body.update(max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    else:
        body["input"] = "hi"
    reply = hostile.post(path, body)
    assert reply.status_code == 400, reply.text
    assert "upstream_objects" in reply.text and param in reply.text
    assert hostile.capture.received() == []
