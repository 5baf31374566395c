"""OpenAI Responses → chat completions and back (for Responses clients on chat targets): the
request field by field with its stored history, what cannot be said named, the answer as a
Response, the stream's event grammar with its sequence numbers, and a differential test
against litellm's bridge."""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
import pytest

from gateway.errors import UpstreamBadRequest
from gateway.providers.base import Usage
from gateway.providers.translate import openai_responses as orsp
from gateway.providers.translate import responses_openai as ro

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}
INPUT: list[dict[str, Any]] = [
    {"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "Weather?"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAA"}]},
    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
    {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
    {"type": "function_call_output", "call_id": "call_1", "output": "12C"},
    {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "20C"}]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "12C and 20C."}]},
    {"role": "user", "content": "thanks"},
]  # fmt: skip
REQUEST: dict[str, Any] = {
    "model": "gpt-4o",
    "input": INPUT,
    "instructions": "Be brief.",
    "tools": [TOOL],
    "tool_choice": {"type": "function", "name": "get_weather"},
    "max_output_tokens": 50,
    "temperature": 0.2,
    "top_p": 0.9,
    "parallel_tool_calls": False,
    "user": "u-1",
    "reasoning": {"effort": "low"},
    "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}},
    "store": True,
    "metadata": {"ticket": "T-1"},
    "stream": True,
}  # fmt: skip


def test_a_full_request_becomes_chat_completions() -> None:
    translated = ro.request_to_chat(REQUEST, [], "gpt-4o-mini")
    # The effort goes only to a target that reasons (the attempt stage knows which).
    assert translated.names() == ["reasoning.effort"] and translated.reasoning_effort == "low"
    assert translated.body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
            {"role": "assistant", "content": None, "tool_calls": [  # parallel calls: one turn
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "12C"},
            {"role": "tool", "tool_call_id": "call_2", "content": "20C"},
            {"role": "assistant", "content": "12C and 20C."},
            {"role": "user", "content": "thanks"},
        ],
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "parallel_tool_calls": False,
        "user": "u-1",
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True}},
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [{"type": "function", "function": {
            "name": "get_weather", "parameters": TOOL["parameters"], "description": "Weather for a city", "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }  # fmt: skip


def test_the_stored_history_comes_first() -> None:
    history = [
        {"id": "msg_1", "type": "message", "role": "user", "content": "My name is Ada."},
        orsp.message_item("msg_2", "Hello Ada."),
    ]
    body = {"model": "m", "input": "What is my name?", "previous_response_id": "resp_1"}
    messages = ro.request_to_chat(body, history, "m").body["messages"]
    assert messages == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]


@pytest.mark.parametrize(
    ("change", "left_out"),
    [
        ({"tools": [{"type": "web_search"}, TOOL]}, [("tools[0] (web_search, run by OpenAI)", "hosted")]),
        ({"input": [{"type": "reasoning", "encrypted_content": "gAAA"}, {"role": "user", "content": "x"}]},
         [("input[0] (reasoning)", "advisory")]),
        ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
         [("input[0].content[0] (input_file)", "essential")]),
        ({"input": [{"type": "function_call_output", "output": "x"}]},
         [("input[0] (function_call_output without call_id)", "essential")]),
        ({"conversation": "conv_1", "prompt": {"id": "p"}},
         [("conversation", "essential"), ("prompt", "essential")]),
        ({"client_metadata": {"turn_id": "t"}, "include": ["reasoning.encrypted_content"]},
         [("client_metadata", "advisory")]),
        ({"tools": [{"type": "local_shell"}]}, [("tools[0] (local_shell)", "essential")]),
    ],
)  # fmt: skip
def test_what_chat_completions_cannot_say_is_named_and_classed(
    change: dict[str, Any], left_out: list[tuple[str, str]]
) -> None:
    body = {"model": "m", "input": "hi", **change}
    translated = ro.request_to_chat(body, [], "m")
    assert [(o.where, o.kind) for o in translated.left_out] == left_out


NAMESPACE = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Sub-agents.",
    "tools": [
        {"type": "function", "name": "spawn_agent", "parameters": {"type": "object", "properties": {}}},
        {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}},
    ],
}  # fmt: skip


def test_namespaced_tools_become_function_tools_and_their_calls_keep_the_clients_names() -> None:
    body = {"model": "m", "input": [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "c1", "namespace": "multi_agent_v1",
         "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
    ], "tools": [TOOL, NAMESPACE],
       "tool_choice": {"type": "function", "namespace": "multi_agent_v1", "name": "spawn_agent"}}  # fmt: skip
    translated = ro.request_to_chat(body, [], "m")
    assert translated.left_out == []
    names = [t["function"]["name"] for t in translated.body["tools"]]
    # get_weather is taken by a top-level tool: the namespaced one is told apart.
    assert names == ["get_weather", "spawn_agent", "multi_agent_v1__get_weather"]
    call = translated.body["messages"][1]["tool_calls"][0]
    assert call["function"]["name"] == "multi_agent_v1__get_weather"
    assert translated.body["tool_choice"] == {
        "type": "function",
        "function": {"name": "spawn_agent"},
    }
    # The answer's calls come back under the client's namespace and name, whole or streamed.
    completion = {"choices": [{"message": {"tool_calls": [
        {"id": "c2", "function": {"name": "multi_agent_v1__get_weather", "arguments": "{}"}},
        {"id": "c3", "function": {"name": "get_weather", "arguments": "{}"}}]},
        "finish_reason": "tool_calls"}]}  # fmt: skip
    output, _ = orsp.output_from_chat(completion, translated.tool_names)
    assert [(o.get("namespace"), o["name"]) for o in output] == [
        ("multi_agent_v1", "get_weather"),
        (None, "get_weather"),
    ]
    writer = orsp.ResponsesStreamWriter(body, "resp_1", "m", translated.tool_names)
    chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c4", "function": {"name": "spawn_agent", "arguments": "{}"}}]}}]}  # fmt: skip
    events = list(writer.feed(chunk)) + list(writer.close())
    done = [d["item"] for name, d in events if name == "response.output_item.done"]
    assert [(i["namespace"], i["name"]) for i in done] == [("multi_agent_v1", "spawn_agent")]


def test_a_wrong_role_or_tool_choice_is_the_requests_fault() -> None:
    with pytest.raises(UpstreamBadRequest):
        ro.request_to_chat({"model": "m", "input": [{"role": "wizard", "content": "x"}]}, [], "m")
    with pytest.raises(UpstreamBadRequest):
        ro.request_to_chat({"model": "m", "input": "x", "tools": [TOOL], "tool_choice": 3}, [], "m")


def test_a_chat_answer_becomes_response_output() -> None:
    completion = {"choices": [{"finish_reason": "tool_calls", "message": {
        "content": "Checking.", "tool_calls": [
            {"id": "call_9", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}}]}  # fmt: skip
    output, status = orsp.output_from_chat(completion)
    assert status == "completed"
    assert [item["type"] for item in output] == ["message", "function_call"]
    assert output[0]["content"][0] == {
        "type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []
    }  # fmt: skip
    assert (output[1]["call_id"], output[1]["arguments"]) == ("call_9", '{"city":"Oslo"}')
    usage = Usage(prompt_tokens=30, completion_tokens=7, cached_tokens=10, reasoning_tokens=2)
    response = orsp.response_object(REQUEST, "resp_x", "gpt-4o", output, status, usage, 1)
    assert response["usage"] == {
        "input_tokens": 30, "input_tokens_details": {"cached_tokens": 10},
        "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 37,
    }  # fmt: skip
    assert response["metadata"] == {"ticket": "T-1"} and response["instructions"] == "Be brief."
    capped = {"choices": [{"finish_reason": "length", "message": {"content": "tok tok"}}]}
    assert orsp.output_from_chat(capped)[1] == "incomplete"


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


STREAM = [
    _chunk({"role": "assistant", "content": ""}),
    _chunk({"content": "Let me "}),
    _chunk({"content": "check."}),
    _chunk({"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "get_weather", "arguments": ""}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
    _chunk({}, "tool_calls"),
    {"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 12}},
]  # fmt: skip
GRAMMAR = re.compile(
    r"response\.created response\.in_progress"
    r"( response\.output_item\.added( response\.content_part\.added( response\.output_text\.delta)+"
    r" response\.output_text\.done response\.content_part\.done"
    r"|( response\.function_call_arguments\.delta)* response\.function_call_arguments\.done)"
    r" response\.output_item\.done)* response\.(completed|incomplete)"
)


def test_a_stream_follows_the_responses_event_grammar() -> None:
    writer = orsp.ResponsesStreamWriter(REQUEST, "resp_1", "gpt-4o")
    events = [e for c in STREAM for e in writer.feed(c)] + list(writer.close())
    names = " ".join(name for name, _ in events)
    assert GRAMMAR.fullmatch(names), names
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    assert all(data["type"] == name for name, data in events)
    completed = events[-1][1]["response"]
    assert completed["id"] == events[0][1]["response"]["id"] == "resp_1"
    assert completed["status"] == "completed" and completed["usage"]["output_tokens"] == 12
    message, call = completed["output"]
    assert message["content"][0]["text"] == "Let me check."
    assert (call["call_id"], orjson.loads(call["arguments"])) == ("call_a", {"city": "Oslo"})
    added = [d["item"]["id"] for n, d in events if n == "response.output_item.added"]
    done = [d["item"]["id"] for n, d in events if n == "response.output_item.done"]
    assert added == done == [message["id"], call["id"]]
    assert all("_index" not in item for item in completed["output"])


def test_a_broken_stream_ends_with_response_failed() -> None:
    writer = orsp.ResponsesStreamWriter(REQUEST, "resp_2", "gpt-4o")
    events = [e for c in STREAM[:3] for e in writer.feed(c)]
    failed = list(writer.fail("server_error", "upstream stream failed"))
    assert [name for name, _ in failed] == ["response.failed"]
    response = failed[0][1]["response"]
    assert response["status"] == "failed" and response["error"]["code"] == "server_error"
    assert failed[0][1]["sequence_number"] == len(events)


def test_the_request_agrees_with_litellms_bridge() -> None:
    """litellm's Responses → chat bridge as the oracle on what both say. By design ours sends
    max_completion_tokens (chat's current name), assistant text as a string, and no
    `detail` the client did not choose; litellm numbers tool calls."""
    from gateway.providers.litellm import import_litellm

    import_litellm()
    from litellm.responses.litellm_completion_transformation.transformation import (
        LiteLLMCompletionResponsesConfig,
    )

    request = {
        k: v for k, v in REQUEST.items() if k not in ("reasoning", "store", "stream", "metadata")
    }
    theirs = LiteLLMCompletionResponsesConfig.transform_responses_api_request_to_chat_completion_request(
        model="gpt-4o", input=copy.deepcopy(INPUT), custom_llm_provider="openai",
        responses_api_request={k: v for k, v in copy.deepcopy(request).items() if k not in ("model", "input")},
    )  # fmt: skip
    ours = ro.request_to_chat(request, [], "gpt-4o").body

    def normal(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for message in orjson.loads(orjson.dumps(messages, default=str)):
            for call in message.get("tool_calls") or []:
                call.pop("index", None)
            for part in message["content"] if isinstance(message.get("content"), list) else []:
                (part.get("image_url") or {}).pop("detail", None)
            if message["role"] == "assistant" and isinstance(message.get("content"), list):
                message["content"] = "".join(p["text"] for p in message["content"])
            out.append(message)
        return out

    assert normal(ours["messages"]) == normal(theirs["messages"])
    for name in ("tools", "tool_choice", "temperature", "top_p", "parallel_tool_calls", "user",
                 "response_format"):  # fmt: skip
        assert ours[name] == theirs[name], name
    assert ours["max_completion_tokens"] == theirs["max_tokens"]


def test_additional_tools_items_and_custom_tools_cross_to_chat_and_back() -> None:
    # Codex's newest shape: tools in an `additional_tools` item, a free-form `custom` tool.
    offered = {"type": "additional_tools", "role": "developer", "tools": [
        {"type": "namespace", "name": "functions", "tools": [
            {"type": "custom", "name": "exec", "description": "Run JS.",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
            {"type": "function", "name": "wait", "parameters": {"type": "object", "properties": {}}}]}]}  # fmt: skip
    body = {"model": "m", "input": [
        offered, {"role": "user", "content": "go"},
        {"type": "custom_tool_call", "call_id": "c1", "namespace": "functions", "name": "exec",
         "input": "ls()"},
        {"type": "custom_tool_call_output", "call_id": "c1",
         "output": [{"type": "input_text", "text": "a.txt"}]},
    ]}  # fmt: skip
    translated = ro.request_to_chat(body, [], "m")
    assert translated.left_out == []
    tools = {t["function"]["name"]: t["function"] for t in translated.body["tools"]}
    assert tools["exec"]["parameters"]["required"] == ["input"]
    assert translated.body["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "exec", "arguments": '{"input":"ls()"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "a.txt"},
    ]  # fmt: skip
    completion = {"choices": [{"message": {"tool_calls": [
        {"id": "c2", "function": {"name": "exec", "arguments": '{"input":"print(1)"}'}},
        {"id": "c3", "function": {"name": "wait", "arguments": "{}"}}]}}]}  # fmt: skip
    output, _ = orsp.output_from_chat(completion, translated.tool_names)
    assert output[0] | {"id": "x"} == {"id": "x", "type": "custom_tool_call", "status": "completed",
                                       "call_id": "c2", "name": "exec", "namespace": "functions",
                                       "input": "print(1)"}  # fmt: skip
    assert (output[1]["type"], output[1]["namespace"], output[1]["arguments"]) == (
        "function_call", "functions", "{}")  # fmt: skip
    writer = orsp.ResponsesStreamWriter(body, "resp_1", "m", translated.tool_names)
    chunks = [{"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c4", "function": {"name": "exec", "arguments": '{"inp'}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": 'ut":"x"}'}}]}}]}]  # fmt: skip
    events = [e for c in chunks for e in writer.feed(c)] + list(writer.close())
    names = [name for name, _ in events]
    assert "response.function_call_arguments.delta" not in names
    [done] = [d["item"] for name, d in events if name == "response.output_item.done"]
    assert (done["type"], done["input"], done["namespace"]) == (
        "custom_tool_call",
        "x",
        "functions",
    )
    assert writer.final is not None and writer.final["output"][0]["input"] == "x"
