"""Whole ↔ streamed, both wires the response cache replays: a whole answer streamed and
gathered back is the same answer; a cut stream gathers nothing."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from gateway.providers.sse import data_of
from gateway.providers.translate.chat_replay import ChatGatherer, chat_events
from gateway.providers.translate.messages_replay import MessageGatherer, message_events
from gateway.providers.translate.responses_replay import ResponsesGatherer, response_events

text = st.text(max_size=40)


@st.composite
def completions(draw: Any) -> dict[str, Any]:
    calls = draw(st.lists(st.tuples(st.text(min_size=1, max_size=8), text), max_size=2))
    message: dict[str, Any] = {"role": "assistant", "content": draw(st.none() | text)}
    if calls:
        message["tool_calls"] = [
            {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": a}}
            for i, (n, a) in enumerate(calls)
        ]
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": draw(st.sampled_from(["stop", "length", "tool_calls"]))}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }  # fmt: skip


@given(completions())
def test_a_chat_completion_streamed_and_gathered_is_itself(whole: dict[str, Any]) -> None:
    gathered = ChatGatherer()
    for event in chat_events(whole, with_usage=True):
        gathered.see(event.rstrip(b"\n"))
    assert gathered.whole() == whole


def test_the_usage_chunk_only_when_asked_and_a_cut_stream_gathers_nothing() -> None:
    whole = {
        "id": "c", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }  # fmt: skip
    assert not any(b'"usage"' in e for e in chat_events(whole, with_usage=False))
    cut = ChatGatherer()
    for event in chat_events(whole, with_usage=True)[:-1]:  # no [DONE]
        cut.see(event)
    assert cut.whole() is None


@st.composite
def messages(draw: Any) -> dict[str, Any]:
    blocks = draw(st.lists(st.one_of(
        st.builds(lambda t: {"type": "text", "text": t}, text),
        st.builds(lambda n, x: {"type": "tool_use", "id": "toolu_1", "name": n or "f",
                                "input": {"x": x}}, st.text(max_size=5), text),
        st.builds(lambda t: {"type": "thinking", "thinking": t, "signature": "sig"}, text),
    ), max_size=3))  # fmt: skip
    return {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": blocks, "stop_reason": draw(st.sampled_from(["end_turn", "tool_use"])),
        "stop_sequence": None, "usage": {"input_tokens": 4, "output_tokens": 9},
    }  # fmt: skip


@given(messages())
def test_a_message_streamed_and_gathered_is_itself(whole: dict[str, Any]) -> None:
    events = message_events(whole)
    assert events is not None
    gathered = MessageGatherer()
    for event in events:
        gathered.see(event)
    assert gathered.whole() == whole


def test_an_unknown_block_is_neither_replayed_nor_gathered() -> None:
    whole = {"id": "m", "type": "message", "role": "assistant", "model": "c",
             "content": [{"type": "mystery"}], "stop_reason": "end_turn",
             "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1}}  # fmt: skip
    assert message_events(whole) is None
    gathered = MessageGatherer()
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "mystery"}}
    for data in ({"type": "message_start", "message": {**whole, "content": []}}, start,
                 {"type": "message_stop"}):  # fmt: skip
        gathered.see(b"data: " + orjson.dumps(data))
    assert gathered.whole() is None


@st.composite
def responses(draw: Any) -> dict[str, Any]:
    items = draw(st.lists(st.one_of(
        st.builds(lambda t: {"id": "msg_1", "type": "message", "status": "completed",
                             "role": "assistant",
                             "content": [{"type": "output_text", "text": t, "annotations": []}]},
                  text),
        st.builds(lambda a: {"id": "fc_1", "type": "function_call", "status": "completed",
                             "call_id": "call_1", "name": "f", "arguments": a}, text),
        st.just({"id": "rs_1", "type": "reasoning", "summary": []}),
    ), max_size=3))  # fmt: skip
    return {
        "id": "resp_1", "object": "response", "created_at": 1,
        "model": "gpt", "output": items, "usage": {"input_tokens": 2, "output_tokens": 3},
        "status": draw(st.sampled_from(["completed", "incomplete"])),
    }  # fmt: skip


@given(responses())
def test_a_response_streamed_and_gathered_is_itself(whole: dict[str, Any]) -> None:
    events = response_events(whole)
    assert events is not None
    numbers = [orjson.loads(data_of(e.rstrip(b"\n")) or b"{}")["sequence_number"] for e in events]
    assert numbers == list(range(len(events)))
    gathered = ResponsesGatherer()
    for event in events:
        gathered.see(event)
    assert gathered.whole() == whole


def test_a_failed_response_is_neither_replayed_nor_gathered() -> None:
    whole = {"id": "r", "status": "failed", "output": []}
    assert response_events(whole) is None
    gathered = ResponsesGatherer()
    gathered.see(b"data: " + orjson.dumps({"type": "response.completed", "response": whole}))
    assert gathered.whole() is None
