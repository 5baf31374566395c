"""Finish reasons as each wire states them, from whole answers and from stream events; an
event that states none (most of them) is passed over without a parse."""

from __future__ import annotations

import orjson
import pytest

from gateway.providers import finish


def _event(payload: dict[str, object], name: str | None = None) -> bytes:
    head = f"event: {name}\n".encode() if name else b""
    return head + b"data: " + orjson.dumps(payload) + b"\n\n"


def test_whole_answers_in_each_wire() -> None:
    chat = {
        "choices": [{"index": 0, "finish_reason": "stop"}, {"index": 1, "finish_reason": "length"}]
    }
    assert finish.from_body("openai", orjson.dumps(chat)) == ["stop", "length"]
    assert finish.from_body("anthropic", orjson.dumps({"stop_reason": "tool_use"})) == ["tool_use"]
    done = {"status": "completed", "incomplete_details": None}
    assert finish.from_body("responses", orjson.dumps(done)) == ["completed"]
    cut = {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    assert finish.from_body("responses", orjson.dumps(cut)) == ["max_output_tokens"]
    assert finish.from_body("openai", orjson.dumps({"data": [{"embedding": [0.1]}]})) == []
    for junk in (b"", b"not json", b"[]", b'"x"'):
        assert finish.from_body("openai", junk) == []


@pytest.mark.parametrize(
    ("wire", "events", "expected"),
    [
        ("openai", [_event({"choices": [{"delta": {"content": "hi"}, "finish_reason": None}]}),
                    _event({"choices": [{"delta": {}, "finish_reason": "stop"}]}),
                    b"data: [DONE]\n\n"], ["stop"]),
        ("anthropic", [_event({"type": "content_block_delta", "delta": {"text": "x"}},
                              "content_block_delta"),
                       _event({"type": "message_delta", "delta": {"stop_reason": "end_turn"}},
                              "message_delta")], ["end_turn"]),
        ("responses", [_event({"type": "response.output_text.delta", "delta": "x"},
                              "response.output_text.delta"),
                       _event({"type": "response.completed",
                               "response": {"status": "completed"}}, "response.completed")],
         ["completed"]),
    ],
)  # fmt: skip
def test_stream_events_in_each_wire(wire: str, events: list[bytes], expected: list[str]) -> None:
    seen: list[str] = []
    for event in events:
        finish.see_event(wire, event, seen)
    assert seen == expected


def test_an_unreadable_event_adds_nothing() -> None:
    seen: list[str] = []
    finish.see_event("openai", b'data: {"finish_reason":"stop", broken\n\n', seen)
    finish.see_event("openai", b'"finish_reason":"stop" without a data line', seen)
    finish.see_event("other", b'data: {"finish_reason":"stop"}\n\n', seen)
    assert seen == []
