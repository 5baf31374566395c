"""Anthropic Messages → OpenAI chat completions and back (for Anthropic clients on OpenAI-wire
targets): field by field, round trips through the opposite translator, and the stream's
event grammar."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from gateway.errors import UpstreamBadRequest
from gateway.providers.base import Usage
from gateway.providers.translate import anthropic_openai as ao
from gateway.providers.translate import openai_anthropic as oa

CACHE = {"type": "ephemeral"}
REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 512,
    "system": [{"type": "text", "text": "You are terse.", "cache_control": CACHE}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "hm", "signature": "sig"},
                {"type": "text", "text": "Let me look it up."},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "cat"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "a cat", "is_error": False},
                {"type": "text", "text": "And now?"},
            ],
        },
    ],
    "tools": [
        {
            "name": "lookup",
            "description": "Look a word up.",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
    ],
    "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    "stop_sequences": ["END"],
    "temperature": 0.2,
    "top_k": 5,
    "metadata": {"user_id": "u-1"},
    "stream": True,
}  # fmt: skip


def test_a_full_request_becomes_chat_completions() -> None:
    translated = ao.request_to_openai(REQUEST, "gpt-4o")
    # What chat completions cannot say is named, by where it was.
    assert translated.names() == ["messages[1].content[0] (thinking)", "top_k"]
    assert translated.names("essential") == []  # both advisory: the answer is still right
    assert translated.body == {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "You are terse.", "cache_control": CACHE}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Let me look it up.",
                "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q":"cat"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat"},
            {"role": "user", "content": [{"type": "text", "text": "And now?"}]},
        ],
        "max_tokens": 512,
        "temperature": 0.2,
        "stop": ["END"],
        "user": "u-1",
        "stream": True,
        "stream_options": {"include_usage": True},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                    "description": "Look a word up.",
                },
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }  # fmt: skip


def test_the_round_trip_through_the_opposite_translator_keeps_the_request() -> None:
    request = {k: v for k, v in REQUEST.items() if k not in ("top_k", "stream")}
    request["messages"] = [
        REQUEST["messages"][0] | {"content": REQUEST["messages"][0]["content"][:2]},
        {"role": "assistant", "content": REQUEST["messages"][1]["content"][1:]},
        REQUEST["messages"][2],
    ]
    back = oa.request_to_anthropic(ao.request_to_openai(request, "m").body, "m", 4096)
    assert back["system"] == request["system"]
    assert back["tools"] == request["tools"]
    assert back["tool_choice"] == request["tool_choice"]
    assert back["stop_sequences"] == ["END"] and back["metadata"] == {"user_id": "u-1"}
    sent = [(m["role"], [b["type"] for b in m["content"]]) for m in request["messages"]]
    got = [(m["role"], [b["type"] for b in m["content"]]) for m in back["messages"]]
    assert got == sent
    assert back["messages"][1]["content"][1]["input"] == {"q": "cat"}


@pytest.mark.parametrize(
    ("change", "left_out"),
    [
        ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
         [("messages[0].content[0] (document)", "essential")]),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]},
         [("tools[0] (web_search_20250305, run by Anthropic)", "hosted")]),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]},
         [("tools[0] (bash_20250124, defined by Anthropic)", "essential")]),
        ({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "file", "file_id": "f_1"}}]}]},
         [("messages[0].content[0] (image)", "essential")]),
        ({"context_management": {"edits": []}, "thinking": {"type": "enabled", "budget_tokens": 2000},
          "output_config": {"effort": "medium"}},
         [("context_management", "advisory"), ("thinking", "advisory"), ("output_config", "advisory")]),
        ({"messages": [{"role": "assistant", "content": [
            {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]}]},
         [("messages[0].content[0] (server_tool_use)", "hosted")]),
        ({"mcp_servers": [{"url": "https://x"}], "future_field": 1},
         [("mcp_servers", "essential"), ("future_field", "essential")]),
        ({"thinking": {"type": "disabled"}, "top_k": None}, []),
    ],
)  # fmt: skip
def test_what_chat_completions_cannot_say_is_named_and_classed_not_lost_silently(
    change: dict[str, Any], left_out: list[tuple[str, str]]
) -> None:
    base = {k: v for k, v in REQUEST.items() if k not in ("top_k", "messages")}
    base["messages"] = [{"role": "user", "content": "hi"}]
    translated = ao.request_to_openai({**base, **change}, "m")
    assert [(o.where, o.kind) for o in translated.left_out] == left_out


def test_system_turns_inside_messages_become_system_messages() -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}  # fmt: skip
    out = ao.request_to_openai(body, "m")
    assert out.left_out == []
    assert out.body["messages"][0] == {
        "role": "system",
        "content": [{"type": "text", "text": "Be brief."}],
    }


def test_an_invalid_tool_choice_or_role_is_the_requests_fault() -> None:
    with pytest.raises(UpstreamBadRequest):
        ao.request_to_openai({**REQUEST, "tool_choice": {"type": "sometimes"}}, "m")
    with pytest.raises(UpstreamBadRequest):
        ao.request_to_openai({**REQUEST, "messages": [{"role": "tool", "content": "x"}]}, "m")


def test_an_answer_becomes_an_anthropic_message() -> None:
    completion = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": "Checking.",
                    "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "dog"}'}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }  # fmt: skip
    usage = Usage(prompt_tokens=120, completion_tokens=9, cached_tokens=100)
    message = ao.response_to_anthropic(completion, "claude-sonnet-4-5", usage)
    assert re.fullmatch(r"msg_[0-9a-f]{24}", message["id"])
    assert (message["type"], message["role"], message["model"]) == (
        "message",
        "assistant",
        "claude-sonnet-4-5",
    )
    assert message["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "lookup", "input": {"q": "dog"}},
    ]
    assert message["stop_reason"] == "tool_use" and message["stop_sequence"] is None
    assert message["usage"] == {
        "input_tokens": 20, "output_tokens": 9, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0,
    }  # fmt: skip
    assert ao.stop_reason("length") == "max_tokens" and ao.stop_reason("stop") == "end_turn"


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def tool(
    index: int, id: str | None = None, name: str | None = None, args: str = ""
) -> dict[str, Any]:
    function: dict[str, Any] = {"arguments": args}
    if name:
        function["name"] = name
    return chunk({"tool_calls": [{"index": index, "id": id, "function": function}]})


STREAM = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Let me "}),
    chunk({"content": "check."}),
    tool(0, "call_a", "lookup", ""),
    tool(0, args='{"q":'),
    tool(0, args=' "cat"}'),
    tool(1, "call_b", "lookup", '{"q": "dog"}'),
    chunk({}, "tool_calls"),
    {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 17}},
]


def test_a_stream_follows_anthropics_event_grammar() -> None:
    writer = ao.AnthropicStreamWriter("claude-sonnet-4-5", prompt_tokens=48)
    events = [e for c in STREAM for e in writer.feed(c)] + list(writer.close())
    names = " ".join(name for name, _ in events)
    grammar = (
        r"message_start content_block_start ping( content_block_delta)* content_block_stop"
        r"( content_block_start( content_block_delta)* content_block_stop)* message_delta message_stop"
    )
    assert re.fullmatch(grammar, names), names
    assert writer.finished
    starts = [d for n, d in events if n == "content_block_start"]
    assert [s["index"] for s in starts] == [0, 1, 2]
    assert [s["content_block"]["type"] for s in starts] == ["text", "tool_use", "tool_use"]
    assert [s["content_block"].get("id") for s in starts[1:]] == ["call_a", "call_b"]
    deltas = [d for n, d in events if n == "content_block_delta"]
    text = "".join(d["delta"].get("text", "") for d in deltas if d["index"] == 0)
    first = "".join(d["delta"].get("partial_json", "") for d in deltas if d["index"] == 1)
    assert (text, orjson.loads(first)) == ("Let me check.", {"q": "cat"})
    assert events[0][1]["message"]["usage"]["input_tokens"] == 48
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use" and delta["usage"]["output_tokens"] == 17
    assert delta["usage"]["input_tokens"] == 50  # cumulative, as Anthropic sends it
    assert ao.sse(events[-1]) == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'


def test_the_stream_read_back_by_the_opposite_translator_says_the_same() -> None:
    writer = ao.AnthropicStreamWriter("m")
    events = [e for c in STREAM for e in writer.feed(c)] + list(writer.close())
    reader = oa.StreamTranslator(include_usage=True)
    chunks = [c for _, data in events for c in reader.feed(data)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    calls: dict[int, str] = {}
    for c in chunks:
        for choice in c["choices"]:
            for call in choice["delta"].get("tool_calls") or []:
                calls[call["index"]] = calls.get(call["index"], "") + call["function"]["arguments"]
    assert text == "Let me check."
    assert {i: orjson.loads(a) for i, a in calls.items()} == {0: {"q": "cat"}, 1: {"q": "dog"}}
    assert reader.finished and reader.usage.completion_tokens == 17


def test_the_request_agrees_with_litellms_adapter() -> None:
    """litellm's Anthropic adapter as the oracle, on what both express. Differences by design:
    ours asks for usage in streams (billing needs it) and maps disable_parallel_tool_use;
    litellm keeps thinking blocks as fields an OpenAI-wire server does not define."""
    import copy

    from gateway.providers.litellm import import_litellm

    import_litellm()
    from litellm.llms.anthropic.messages.adapters.transformation import (
        LiteLLMAnthropicMessagesAdapter,
    )

    request = {k: v for k, v in REQUEST.items() if k != "top_k"}
    theirs, _ = LiteLLMAnthropicMessagesAdapter().translate_anthropic_to_openai(
        copy.deepcopy(request)
    )
    ours = ao.request_to_openai(request, str(request["model"])).body

    def normal(body: dict[str, Any]) -> dict[str, Any]:
        body = orjson.loads(orjson.dumps(body, default=str))
        for key in ("stream_options", "parallel_tool_calls"):
            body.pop(key, None)
        for message in body["messages"]:
            message.pop("thinking_blocks", None)
            message.pop("reasoning_content", None)
            for call in message.get("tool_calls") or []:
                call["function"]["arguments"] = orjson.loads(call["function"]["arguments"])
        return body

    assert normal(ours) == normal(dict(theirs))


@pytest.mark.parametrize(
    ("settings", "effort"),
    [
        ({"output_config": {"effort": "medium"}, "thinking": {"type": "adaptive"}}, "medium"),
        ({"output_config": {"effort": "max"}}, "high"),
        ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 8000}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 32000}}, "high"),
        ({"thinking": {"type": "adaptive"}}, None),  # it says nothing of how hard
        ({"thinking": {"type": "disabled"}}, None),
    ],
)
def test_thinking_settings_become_an_effort_for_a_target_that_reasons(
    settings: dict[str, Any], effort: str | None
) -> None:
    body = {"model": "m", "max_tokens": 9, "messages": [{"role": "user", "content": "hi"}]}
    translated = ao.request_to_openai({**body, **settings}, "m")
    assert translated.reasoning_effort == effort
    assert "reasoning_effort" not in translated.body  # added per target, where it reasons
