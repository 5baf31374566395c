"""The shape stage and the provider cache hints: input request → output request, including
what must not change."""

from __future__ import annotations

import copy
import random

import orjson

from gateway.mock.cache import PrefixCache
from gateway.pipeline.shape import cache_hint, shape
from gateway.providers.base import CacheHint
from gateway.providers.cache_hints import anthropic_breakpoints, count_markers
from gateway.providers.translate.openai_anthropic import request_to_anthropic
from policies.schema_base import PromptCache

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {"type": "object", "required": ["city"],
                       "properties": {"unit": {"type": "string"}, "city": {"type": "string"}}},
    },
}  # fmt: skip
SEARCH = {"type": "function", "function": {"parameters": {"type": "object"}, "name": "search"}}
SYSTEM = "You are the bank's assistant. Current time: 2026-11-29T23:41:07Z. Request id: r-8812."
VOLATILE = [r"\d{4}-\d{2}-\d{2}T[\d:.]+Z", r"r-\d+"]


def _body(tools: list[object] | None = None, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "model": "m",
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "what is my balance?"},
        ],
    }
    if tools is not None:
        body["tools"] = tools
    body.update(extra)
    return body


def test_tools_in_any_order_serialise_to_the_same_bytes() -> None:
    a = shape(_body([WEATHER, SEARCH]), PromptCache())
    b = shape(_body([SEARCH, copy.deepcopy(WEATHER)]), PromptCache())
    assert orjson.dumps(a.body["tools"]) == orjson.dumps(b.body["tools"])
    assert [t["function"]["name"] for t in a.body["tools"]] == ["search", "weather"]
    params = a.body["tools"][1]["function"]["parameters"]
    assert list(params) == ["properties", "required", "type"]
    assert list(params["properties"]) == ["city", "unit"]
    assert params["required"] == ["city"]  # lists keep their order
    assert a.changes == ("tools",) and a.prefix_hash == b.prefix_hash
    # The messages are the client's, untouched, and the input was not mutated.
    original = _body([WEATHER, SEARCH])
    snapshot = copy.deepcopy(original)
    shaped = shape(original, PromptCache())
    assert shaped.body["messages"] == snapshot["messages"] and original == snapshot


def test_what_must_not_change() -> None:
    plain = _body()
    assert shape(plain, PromptCache()).body == plain  # no tools, no volatile patterns
    off = shape(_body([WEATHER, SEARCH]), PromptCache(canonical_tools=False))
    assert off.body["tools"] == [WEATHER, SEARCH] and off.changes == ()
    marked = _body([{**SEARCH, "cache_control": {"type": "ephemeral"}}, WEATHER])
    left = shape(marked, PromptCache(volatile=VOLATILE))
    assert left.body == marked and left.client_markers  # the client's own cache markers
    assert cache_hint(left, PromptCache(), "team") is None


def test_volatile_values_move_to_a_note_in_the_final_user_turn() -> None:
    policy = PromptCache(volatile=VOLATILE)
    a = shape(_body(), policy)
    b = shape(_body(messages=[{"role": "system", "content": SYSTEM.replace("23:41:07", "09:00:00")
                                                   .replace("8812", "17")},
                              {"role": "user", "content": "hello"},
                              {"role": "assistant", "content": "hi"},
                              {"role": "user", "content": "what is my balance?"}]), policy)  # fmt: skip
    system = a.body["messages"][0]["content"]
    assert system == "You are the bank's assistant. Current time: [ref 1]. Request id: [ref 2]."
    assert a.body["messages"][0] == b.body["messages"][0]  # byte-identical prefix
    assert a.prefix_hash == b.prefix_hash and a.changes == ("volatile",)
    # Turns keep their order; the values ride at the start of the final user message.
    roles = [m["role"] for m in a.body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert a.body["messages"][1] == {"role": "user", "content": "hello"}
    final = a.body["messages"][3]["content"]
    assert final[0]["text"] == (
        "Values the system prompt refers to: [ref 1] = 2026-11-29T23:41:07Z; [ref 2] = r-8812"
    )
    assert final[1] == {"type": "text", "text": "what is my balance?"}
    as_system = shape(_body(), PromptCache(volatile=VOLATILE, note_role="system"))
    roles = [m["role"] for m in as_system.body["messages"]]
    assert roles == ["system", "user", "assistant", "system", "user"]


def test_multi_part_system_content_can_be_ordered_static_first() -> None:
    parts = [{"type": "text", "text": "Today is 2026-11-29T23:41:07Z."},
             {"type": "text", "text": "Policy manual. " * 50},
             {"type": "text", "text": "Tone guide."}]  # fmt: skip
    body = _body(messages=[{"role": "system", "content": parts},
                           {"role": "user", "content": "hi"}])  # fmt: skip
    shaped = shape(body, PromptCache(volatile=VOLATILE, order_system_parts=True))
    assert shaped.body["messages"][0]["content"] == [parts[1], parts[2], parts[0]]
    assert shaped.body["messages"][1] == {"role": "user", "content": "hi"}
    assert shaped.changes == ("system_ordered",)


def test_anthropic_breakpoints_above_the_minimum_and_never_more_than_four() -> None:
    long_system = "Policy manual. " * 400  # ~1,500 tokens
    body = request_to_anthropic(
        _body([WEATHER, SEARCH], messages=[
            {"role": "system", "content": long_system},
            {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "and now?"}]), "claude", 1024)  # fmt: skip
    hint = CacheHint(anthropic_ttl="1h", anthropic_min_tokens=1024)
    marked = anthropic_breakpoints(body, hint)
    assert "cache_control" not in marked["tools"][-1]  # the tools alone are too short
    assert marked["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert marked["messages"][1]["content"][-1]["cache_control"]["type"] == "ephemeral"
    assert "cache_control" not in str(marked["messages"][2])  # the new user turn is not
    assert count_markers(marked) == 2 and count_markers(body) == 0  # input untouched
    short = request_to_anthropic(_body(), "claude", 1024)
    assert count_markers(anthropic_breakpoints(short, hint)) == 0
    crowded = copy.deepcopy(body)
    for block in crowded["messages"][0]["content"][:1] + crowded["system"][:1]:
        block["cache_control"] = {"type": "ephemeral"}
    crowded["tools"][0]["cache_control"] = {"type": "ephemeral"}
    assert count_markers(crowded) == 3
    assert count_markers(anthropic_breakpoints(crowded, hint)) == 4  # one more, not two


def test_the_mock_caches_exact_prefixes_like_the_providers() -> None:
    now = [0.0]
    cache = PrefixCache(clock=lambda: now[0])
    long = _body(messages=[{"role": "system", "content": "Policy manual. " * 400},
                           {"role": "user", "content": "q1"}])  # fmt: skip
    first = cache.openai(long)
    assert first.read == 0 and first.prompt >= 1024
    again = cache.openai({**long, "messages": [*long["messages"][:1],  # type: ignore[list-item]
                                               {"role": "user", "content": "q2"}]})  # fmt: skip
    assert again.read >= 1024 and again.read % 128 == 0 and again.read < again.prompt
    now[0] += 301  # five minutes without use: gone
    assert cache.openai(long).read == 0
    tools = [WEATHER, SEARCH]
    random.Random(1).shuffle(tools)
    assert cache.openai(_body(tools, messages=long["messages"])).read == 0  # new bytes
