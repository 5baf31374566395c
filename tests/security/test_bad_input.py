"""Bad input always gets a clear 4xx in the client's error format — never a 500, never a
hang — and its ledger row carries that status; the gateway stays healthy afterwards."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.hostile import TEAM_A, Hostile
from tests.support.processes import MockUpstream

pytestmark = pytest.mark.e2e


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def _chat(route: str, **fields: Any) -> dict[str, Any]:
    return {"model": route, "messages": [{"role": "user", "content": "hi"}], **fields}


def _deep_tool(depth: int) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", "parameters": _nested(depth)}}


BAD_BODIES: dict[str, dict[str, Any]] = {
    "content_number_to_anthropic": {
        "model": "claude",
        "messages": [{"role": "user", "content": [1]}],
    },
    "system_content_not_parts": {
        "model": "claude",
        "messages": [{"role": "system", "content": ["x"]}, {"role": "user", "content": "hi"}],
    },
    "tool_calls_a_string": {
        "model": "claude",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": "x"},
        ],
    },
    "tool_choice_without_type": _chat("claude", tool_choice={"function": "f"}),
    "image_url_a_number": {
        "model": "claude",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 5}]}],
    },
    "field_nested_300_levels": _chat("openai", metadata=_nested(300)),
    "tool_parameters_nested_300": _chat("claude", tools=[_deep_tool(300)]),
    "tool_parameters_nested_900": _chat("openai", tools=[_deep_tool(900)]),
    "tool_arguments_not_json": {
        "model": "claude",
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "ok"},
        ],
    },
    "messages_not_a_list": {"model": "openai", "messages": {"role": "user"}},
    "temperature_a_string": _chat("tail", temperature="hot"),
    "tools_of_non_objects": _chat("tail", tools=[1, 2]),
    "stream_a_string": _chat("openai", stream="yes"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_bodies_are_a_400_in_openai_format(hostile: Hostile, case: str) -> None:
    reply = hostile.post("/v1/chat/completions", BAD_BODIES[case])
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert reply.headers["content-type"] == "application/json"
    hostile.healthy()


def test_bad_requests_leave_a_row_with_their_status(hostile: Hostile) -> None:
    before = len(hostile.rows(settle_s=0.3))
    for case in ("content_number_to_anthropic", "field_nested_300_levels"):
        assert hostile.post("/v1/chat/completions", BAD_BODIES[case]).status_code == 400
    rows = hostile.rows()[before:]
    assert [r["status"] for r in rows[-2:]] == [400, 400]
    assert all(r["status"] != 0 for r in hostile.rows())


def test_a_budget_header_of_5000_digits_is_a_400(hostile: Hostile) -> None:
    reply = hostile.post(
        "/v1/chat/completions", _chat("openai"), headers={"x-spillover-budget-ms": "9" * 5000}
    )
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "x-spillover-budget-ms"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{", "not valid JSON"),
        (b"\xff\xfe", "not valid UTF-8"),
        (b"[1, 2]", "JSON object"),
        (b"[" * 2000 + b"]" * 2000, "not valid JSON"),
    ],
)
def test_unparseable_bodies_are_a_400(hostile: Hostile, raw: bytes, message: str) -> None:
    reply = httpx.post(
        hostile.url + "/v1/chat/completions",
        content=raw,
        headers={"Authorization": f"Bearer {TEAM_A}", "content-type": "application/json"},
    )
    assert reply.status_code == 400
    assert message in reply.json()["error"]["message"]


def test_unknown_paths_and_methods_answer_in_openai_format(hostile: Hostile) -> None:
    auth = {"Authorization": f"Bearer {TEAM_A}"}
    reply = httpx.post(hostile.url + "/v1/chat/complete", json={}, headers=auth)
    assert reply.status_code == 404
    assert reply.json()["error"]["code"] == "not_found"
    reply = httpx.get(hostile.url + "/v1/chat/completions", headers=auth)
    assert reply.status_code == 405
    assert reply.headers["allow"] == "POST"
    assert reply.json()["error"]["code"] == "method_not_allowed"
    reply = httpx.post(hostile.url + "/v1/models", headers=auth)
    assert reply.status_code == 405 and reply.headers["allow"] == "GET"


def test_embeddings_on_a_chat_only_route_is_a_client_error(hostile: Hostile) -> None:
    reply = hostile.post("/v1/embeddings", {"model": "claude", "input": "hi"})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "model"


def test_admin_errors_use_the_same_error_format(hostile: Hostile) -> None:
    reply = httpx.get(hostile.url + "/admin/targets")
    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "authentication_error"
    reply = httpx.get(hostile.url + "/admin/targets", headers={"Authorization": f"Bearer {TEAM_A}"})
    assert reply.status_code == 403
    assert reply.json()["error"]["type"] == "permission_error"
    reply = hostile.admin("GET", "/admin/nothing-here")
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"
    reply = hostile.admin("POST", "/admin/faults", json={"kind": "nonsense"})
    assert reply.status_code == 400
    assert "kind" in reply.json()["error"]["message"]
    reply = httpx.get(hostile.url + "/nowhere")
    assert reply.status_code == 404 and "error" in reply.json()


def test_wide_bodies_within_the_size_limit_are_handled_promptly(hostile: Hostile) -> None:
    import time

    started = time.monotonic()
    reply = hostile.post("/v1/chat/completions", _chat("openai", stop=["s"] * 8000))
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "stop"
    wide = _chat("openai", metadata={f"k{i}": i for i in range(4000)})
    assert hostile.post("/v1/chat/completions", wide).status_code == 200
    many = {"model": "openai", "messages": [{"role": "user", "content": "x"}] * 1500}
    assert hostile.post("/v1/chat/completions", many).status_code == 200
    assert time.monotonic() - started < 5
    hostile.healthy()


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.mark.parametrize(
    "tool_choice",
    [
        {"type": "function", "name": "get_weather"},
        {"type": "allowed_tools", "mode": "auto",
         "tools": [{"type": "function", "name": "get_weather"}]},
        {"type": "allowed_tools", "mode": "required",
         "tools": [{"type": "function", "name": "get_weather"}]},
    ],
)  # fmt: skip
def test_responses_tool_choices_from_openais_reference_are_served(
    hostile: Hostile, tool_choice: dict[str, Any]
) -> None:
    for route in ("openai", "claude"):
        body = {"model": route, "input": "weather in Paris?", "tools": [WEATHER],
                "tool_choice": tool_choice}  # fmt: skip
        reply = hostile.post("/v1/responses", body)
        assert reply.status_code == 200, reply.text
        assert reply.json()["output"][0]["name"] == "get_weather"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/messages", {"model": "claude", "max_tokens": 8,
                          "messages": [{"role": {"x": 1}, "content": "hi"}]}, "messages.0.role"),
        ("/v1/messages", {"model": "openai", "max_tokens": 8,
                          "messages": [{"role": ["user"], "content": "hi"}]}, "messages.0.role"),
        ("/v1/responses", {"model": "openai", "input": [
            {"role": "assistant", "content": [{"type": "output_text", "text": 5}]},
            {"role": "user", "content": "hi"}]}, "input[0].content[0].text"),
        ("/v1/responses", {"model": "openai", "input": "hi",
                           "tools": [{"type": "function", "name": "f", "parameters": "x"}]},
         "tools[0].parameters"),
        ("/v1/responses", {"model": "openai", "input": "hi", "tool_choice": {
            "type": "allowed_tools", "mode": "sometimes", "tools": []}}, "tool_choice"),
    ],
)  # fmt: skip
def test_malformed_fields_on_the_newer_ingresses_are_a_400_in_their_format(
    hostile: Hostile, path: str, body: dict[str, Any], param: str
) -> None:
    reply = hostile.post(path, body)
    assert reply.status_code == 400, reply.text
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    if path == "/v1/responses":
        assert error["param"] == param
    else:
        assert param in error["message"]
    hostile.healthy()


def test_stored_response_listing_limits_are_a_400(hostile: Hostile) -> None:
    auth = {"Authorization": f"Bearer {TEAM_A}"}
    for limit in ("²", "٣", "-1", "1e3", "0", "101"):
        reply = httpx.get(
            hostile.url + "/v1/responses/resp_nothing/input_items",
            params={"limit": limit},
            headers=auth,
        )
        assert reply.status_code in (400, 404), reply.text
        assert reply.headers["content-type"] == "application/json"


def test_unchecked_tool_schemas_never_reach_an_upstream_or_its_breaker(
    hostile: Hostile, openai_upstream: MockUpstream
) -> None:
    bad = {"model": "openai", "input": "hi",
           "tools": [{"type": "function", "name": "f", "parameters": "x"}]}  # fmt: skip
    for _ in range(6):
        assert hostile.post("/v1/responses", bad).status_code == 400
    assert openai_upstream.received() == []
    assert hostile.targets()["primary/gpt-4o"]["breaker"]["phase"] == "closed"


def test_admin_spend_refuses_a_repeated_grouping_in_plain_words(hostile: Hostile) -> None:
    reply = hostile.admin("GET", "/admin/spend", params={"by": "team,team"})
    assert reply.status_code == 400
    message = reply.json()["error"]["message"]
    assert message == "group by each dimension at most once"
    reply = hostile.admin("GET", "/admin/spend", params={"by": "team," * 40})
    assert reply.status_code == 400 and "SELECT" not in reply.text
