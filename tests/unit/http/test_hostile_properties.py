"""Property tests: any JSON a client can send either passes the edge (depth, shape) and then
shapes and translates, or is refused with the gateway's own 400 — never another exception.
Hypothesis builds bodies around the chat shape (roles, parts, tools, tool choices) with
arbitrary JSON in every slot."""

from __future__ import annotations

import os
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import InvalidRequest, Unsupported, UpstreamBadRequest
from gateway.pipeline.ingress.openai_validate import json_depth_within, validate
from gateway.pipeline.shape import cache_hint, shape
from gateway.providers.base import CacheHint
from gateway.providers.cache_hints import anthropic_breakpoints
from gateway.providers.translate.openai_anthropic import request_to_anthropic
from policies.schema_base import PromptCache

# CI replays the same examples every run (a red CI is a regression, not a dice roll);
# local runs explore new ones.
IN_CI = bool(os.environ.get("CI"))

MAX_DEPTH = 64

# What orjson.loads can hand the gateway: integers beyond 64 bits arrive as floats.
json_ints = st.integers(-(2**63), 2**64 - 1)
scalars = st.none() | st.booleans() | json_ints | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def either(shaped: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the right shape, now and then any JSON at all."""
    return st.integers(0, 29).flatmap(lambda roll: json_values if roll == 0 else shaped)


parts = either(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("text"), "text": either(st.text())}),
        st.fixed_dictionaries(
            {
                "type": st.just("image_url"),
                "image_url": either(st.fixed_dictionaries({"url": either(st.text())}) | st.text()),
            }
        ),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["input_audio", "file", "refusal", "new_kind"])},
            optional={"input_audio": json_values, "file": json_values, "refusal": json_values},
        ),
    )
)
tool_calls = either(
    st.lists(
        either(
            st.fixed_dictionaries(
                {
                    "id": either(st.text()),
                    "type": st.just("function"),
                    "function": either(
                        st.fixed_dictionaries(
                            {"name": either(st.text()), "arguments": either(st.text())}
                        )
                    ),
                }
            )
        ),
        max_size=3,
    )
)
text_parts = st.lists(
    either(st.fixed_dictionaries({"type": st.just("text"), "text": either(st.text())})),
    max_size=2,
)
_ROLE_MESSAGES = {
    "user": {"content": either(st.text() | st.lists(parts, max_size=3))},
    "system": {"content": either(st.text() | text_parts)},
    "developer": {"content": either(st.text() | text_parts)},
    "assistant": {"content": either(st.none() | st.text() | text_parts)},
    "tool": {"content": either(st.text() | text_parts), "tool_call_id": either(st.text())},
    "function": {"content": either(st.text()), "name": either(st.text())},
}


def _message(role: str) -> st.SearchStrategy[Any]:
    optional: dict[str, st.SearchStrategy[Any]] = {"cache_control": json_values}
    if role == "assistant":
        optional["tool_calls"] = tool_calls
    fields = {"role": either(st.just(role)), **_ROLE_MESSAGES[role]}
    return st.fixed_dictionaries(fields, optional=optional)


messages = st.lists(
    either(st.sampled_from(sorted(_ROLE_MESSAGES)).flatmap(_message)),
    min_size=1,
    max_size=4,
)
tools = either(
    st.lists(
        either(
            st.fixed_dictionaries(
                {
                    "type": either(st.sampled_from(["function", "custom"])),
                    "function": either(
                        st.fixed_dictionaries(
                            {"name": either(st.text())},
                            optional={"parameters": json_values, "description": json_values},
                        )
                    ),
                }
            )
        ),
        max_size=3,
    )
)
tool_choice = either(
    st.sampled_from(["none", "auto", "required", "other"])
    | st.fixed_dictionaries(
        {
            "type": either(st.sampled_from(["function", "allowed_tools"])),
            "function": either(st.fixed_dictionaries({"name": either(st.text())})),
        }
    )
)
bodies = st.fixed_dictionaries(
    {"model": either(st.text(min_size=1)), "messages": either(messages)},
    optional={
        "tools": tools,
        "tool_choice": tool_choice,
        "n": either(st.integers(-1, 4)),
        "stop": either(st.text() | st.lists(st.text(), max_size=4)),
        "max_tokens": either(st.integers(1, 100)),
        "temperature": either(st.floats(0, 2)),
        "stream": either(st.booleans()),
        "stream_options": either(st.fixed_dictionaries({"include_usage": st.booleans()})),
        "parallel_tool_calls": either(st.booleans()),
        "user": either(st.text()),
        "response_format": either(st.fixed_dictionaries({"type": st.just("text")})),
        "top_k": json_values,
    },
)


def _edge(body: Any) -> bool:
    """What the HTTP edge does before any stage: False when it answers 400."""
    try:
        validate("chat", body)
    except InvalidRequest:
        return False
    return json_depth_within(body, MAX_DEPTH)


@settings(
    derandomize=IN_CI, max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(bodies)
def test_any_body_passes_the_edge_and_translates_or_is_refused_with_our_400(body: Any) -> None:
    if not _edge(body):
        return
    try:
        out = request_to_anthropic(body, "claude-x", 1024)
    except (Unsupported, UpstreamBadRequest):
        return
    orjson.dumps(out)  # what is sent must serialise
    assert out["messages"] is not None and isinstance(out["max_tokens"], int | float)


@settings(
    derandomize=IN_CI, max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(bodies, st.booleans(), st.booleans())
def test_the_shape_stage_never_fails_on_a_body_the_edge_passed(
    body: Any, order_parts: bool, volatile: bool
) -> None:
    if not _edge(body):
        return
    policy = PromptCache(
        order_system_parts=order_parts, volatile=[r"\d{4}-\d\d-\d\d"] if volatile else []
    )
    shaped = shape(body, policy)
    orjson.dumps(shaped.body)
    hint = cache_hint(shaped, policy, "team")
    if hint is not None and hint.anthropic_ttl is not None:
        try:
            translated = request_to_anthropic(shaped.body, "claude-x", 1024)
        except (Unsupported, UpstreamBadRequest):
            return
        orjson.dumps(anthropic_breakpoints(translated, CacheHint(anthropic_ttl="5m")))


@settings(derandomize=IN_CI, max_examples=300, deadline=None)
@given(json_values)
def test_any_json_at_all_is_refused_cleanly(value: Any) -> None:
    for endpoint in ("chat", "completions", "embeddings"):
        try:
            validate(endpoint, value)  # type: ignore[arg-type]
        except InvalidRequest:
            continue


@settings(derandomize=IN_CI)
@given(st.integers(1, 400))
def test_the_depth_limit_is_exact(depth: int) -> None:
    value: Any = 1
    for _ in range(depth - 1):
        value = [value]
    nested: Any = {"a": value}
    # {"a": [[...1...]]}: the object is level 1, each list one more.
    assert json_depth_within(nested, MAX_DEPTH) == (depth <= MAX_DEPTH)
