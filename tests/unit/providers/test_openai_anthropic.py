"""The OpenAI ⇄ Anthropic translator, case by case (pure functions, no I/O)."""

from __future__ import annotations

import json

import pytest

from gateway.errors import Unsupported, UpstreamBadRequest
from gateway.providers.translate.openai_anthropic import (
    StreamTranslator,
    request_to_anthropic,
    response_from_anthropic,
)


def test_system_multipart_image_tools_and_stop() -> None:
    body = {
        "model": "claude",
        "max_tokens": 50,
        "temperature": 0.2,
        "stop": "END",
        "user": "u-1",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg"}},
                ],
            },
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "frequency_penalty": 0.5,  # no Anthropic counterpart: dropped
    }
    out = request_to_anthropic(body, "claude-sonnet-4-5", 4096)
    assert out == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 50,
        "temperature": 0.2,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/cat.jpg"}},
                ],
            }
        ],
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
    }


def test_tool_calls_and_results_merge_into_alternating_turns() -> None:
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "weather in Oslo and Rome"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city": "Oslo"}'},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city": "Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "rain"}]},
            {"role": "user", "content": "thanks"},
        ],
    }
    out = request_to_anthropic(body, "m", 1000)
    assert out["max_tokens"] == 1000
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][1]["content"] == [
        {"type": "tool_use", "id": "c1", "name": "w", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "c2", "name": "w", "input": {"city": "Rome"}},
    ]
    assert out["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "c1", "content": "sunny"},
        {"type": "tool_result", "tool_use_id": "c2", "content": [{"type": "text", "text": "rain"}]},
        {"type": "text", "text": "thanks"},
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
    ],
)
def test_tool_choice(choice: object, expected: dict[str, object]) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tool_choice": choice,
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    assert request_to_anthropic(body, "m", 10)["tool_choice"] == expected


def test_what_cannot_be_translated_is_refused_by_type() -> None:
    with pytest.raises(Unsupported):
        request_to_anthropic(
            {"model": "m", "n": 2, "messages": [{"role": "user", "content": "x"}]}, "m", 10
        )
    with pytest.raises(UpstreamBadRequest):
        request_to_anthropic(
            {
                "model": "m",
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"id": "c", "function": {"name": "f", "arguments": "{not json"}}
                        ],
                    }
                ],
            },
            "m",
            10,
        )


def test_response_with_text_tool_use_and_cache_usage() -> None:
    completion, usage = response_from_anthropic(
        {
            "id": "msg_1",
            "model": "claude-sonnet-4-5",
            "stop_reason": "tool_use",
            "content": [
                {"type": "thinking", "thinking": "hmm"},
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "t1", "name": "w", "input": {"city": "Oslo"}},
            ],
            "usage": {
                "input_tokens": 10,
                "output_tokens": 20,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 50,
            },
        }
    )
    message = completion["choices"][0]["message"]
    assert message["content"] == "Let me check."
    assert message["reasoning_content"] == "hmm"
    assert message["tool_calls"] == [
        {"id": "t1", "type": "function", "function": {"name": "w", "arguments": '{"city":"Oslo"}'}}
    ]
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    assert (
        usage.prompt_tokens,
        usage.cached_tokens,
        usage.cache_write_tokens,
        usage.completion_tokens,
    ) == (160, 100, 50, 20)
    assert completion["usage"]["prompt_tokens_details"] == {"cached_tokens": 100}


def test_stream_events_to_chunks_with_tool_argument_deltas() -> None:
    translator = StreamTranslator(include_usage=True)
    events = [
        {
            "type": "message_start",
            "message": {
                "id": "msg_1",
                "model": "c",
                "usage": {"input_tokens": 7, "output_tokens": 1},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t1", "name": "w", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"ci'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": 'ty": "Oslo"}'},
        },
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 12},
        },
        {"type": "message_stop"},
    ]
    chunks = [c for e in events for c in translator.feed(e)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"content": "Hi"}
    assert deltas[2]["tool_calls"][0]["id"] == "t1"
    arguments = "".join(
        d["tool_calls"][0]["function"]["arguments"] for d in deltas[2:] if "tool_calls" in d
    )
    assert json.loads(arguments) == {"city": "Oslo"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12
    assert translator.finished and translator.usage.prompt_tokens == 7


def _asked(**fields: object) -> dict[str, object]:
    body: dict[str, object] = {"model": "c", "messages": [{"role": "user", "content": "hi"}]}
    return {**body, **fields}


@pytest.mark.parametrize(
    ("fields", "budget"),
    [
        ({"reasoning_effort": "low"}, 1024),
        ({"reasoning_effort": "medium"}, 4096),
        ({"reasoning_effort": "high", "max_tokens": 32000}, 16384),
        ({"reasoning_effort": "high", "max_tokens": 2000}, 1999),  # kept under max_tokens
        ({"reasoning_effort": "high", "max_tokens": 1024}, None),  # no room for the smallest
        ({"reasoning_effort": "medium", "temperature": 0.2}, None),
        ({"reasoning_effort": "medium", "temperature": 1}, 4096),
        ({"reasoning_effort": "medium", "top_p": 0.5}, None),
        ({}, None),
    ],
)
def test_a_reasoning_effort_becomes_a_thinking_budget_where_anthropic_takes_one(
    fields: dict[str, object], budget: int | None
) -> None:
    out = request_to_anthropic(_asked(**fields), "claude-sonnet-4-5", default_max_tokens=8192)
    if budget is None:
        assert "thinking" not in out
    else:
        assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}


def test_no_thinking_for_a_forced_tool_or_mid_tool_loop() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    forced = _asked(reasoning_effort="high", tools=[tool],
                    tool_choice={"type": "function", "function": {"name": "f"}})  # fmt: skip
    assert "thinking" not in request_to_anthropic(forced, "c", default_max_tokens=8192)
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    looping = _asked(reasoning_effort="high", tools=[tool], messages=[
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "t1", "content": "done"},
    ])  # fmt: skip
    assert "thinking" not in request_to_anthropic(looping, "c", default_max_tokens=8192)
    looping["messages"].append({"role": "assistant", "content": "ok"})  # type: ignore[attr-defined]
    looping["messages"].append({"role": "user", "content": "again"})  # type: ignore[attr-defined]
    assert request_to_anthropic(looping, "c", default_max_tokens=8192)["thinking"]["budget_tokens"]
