"""litellm's OpenAI→Anthropic translation is the oracle: the same OpenAI request goes through
litellm and through the gateway to the same mock Anthropic upstream, and what the upstream
received and what the client got back must agree."""

from __future__ import annotations

import json
import os
from typing import Any

import openai
import pytest

from tests.support.processes import GATEWAY_KEY, MockUpstream, Proc

pytestmark = pytest.mark.e2e

# Fields both translations must set identically; litellm adds its own extras (metadata
# defaults and the like) that are not part of the translation.
COMPARED = (
    "model",
    "messages",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "stop_sequences",
    "tools",
    "tool_choice",
    "stream",
)

WEATHER = {
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

CASES: dict[str, dict[str, Any]] = {
    "system_and_user": {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        "max_tokens": 5,
    },
    "multipart_and_image": {
        "max_tokens": 5,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                    },
                ],
            }
        ],
    },
    "sampling_and_stops": {
        "max_tokens": 7,
        "temperature": 0.4,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
        "messages": [{"role": "user", "content": "count"}],
    },
    "tool_required": {
        "max_tokens": 50,
        "tools": [WEATHER],
        "tool_choice": "required",
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
    },
    "tool_named": {
        "max_tokens": 50,
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
    },
    "tool_result_turn": {
        "max_tokens": 20,
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "Weather in Oslo?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny, 21C"},
            {"role": "user", "content": "And tomorrow?"},
        ],
    },
}


@pytest.fixture(scope="module")
def litellm_module() -> Any:
    from gateway.providers.litellm import import_litellm

    return import_litellm()


def _via_litellm(
    litellm: Any, upstream: MockUpstream, case: dict[str, Any], stream: bool = False
) -> Any:
    import asyncio

    async def call() -> Any:
        result = await litellm.acompletion(
            model="anthropic/claude-sonnet-4-5",
            api_base=upstream.url,
            api_key="k",
            max_retries=0,
            num_retries=0,
            stream=stream,
            **case,
        )
        if not stream:
            return result
        return [chunk async for chunk in result]

    return asyncio.run(call())


def _compared(body: dict[str, Any]) -> dict[str, Any]:
    out = {k: body.get(k) for k in COMPARED}
    # litellm spells out the default tool type ("custom"); Anthropic treats both the same.
    out["tools"] = [
        {k: v for k, v in t.items() if (k, v) != ("type", "custom")} for t in out["tools"] or []
    ]
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_upstream_request_and_same_answer(
    name: str, litellm_module: Any, gateway: Proc, anthropic_upstream: MockUpstream
) -> None:
    case = CASES[name]
    # Token counts from the request text as sent (litellm and we serialise tools slightly
    # differently), not from the prompt cache's byte-exact accounting.
    anthropic_upstream.configure(prompt_cache=False)
    oracle = _via_litellm(litellm_module, anthropic_upstream, case)
    oracle_sent = anthropic_upstream.received()[-1]["body"]

    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    ours = client.chat.completions.create(model="claude-first", **case)
    ours_sent = anthropic_upstream.received()[-1]["body"]

    assert _compared(ours_sent) == _compared(oracle_sent)

    mine, theirs = ours.choices[0], oracle.choices[0]
    assert mine.finish_reason == theirs.finish_reason
    assert mine.message.content == theirs.message.content
    my_calls = [
        (c.function.name, json.loads(c.function.arguments))  # type: ignore[union-attr]
        for c in mine.message.tool_calls or []
    ]
    their_calls = [
        (c.function.name, json.loads(c.function.arguments)) for c in theirs.message.tool_calls or []
    ]
    assert my_calls == their_calls
    assert ours.usage is not None
    assert (ours.usage.prompt_tokens, ours.usage.completion_tokens) == (
        oracle.usage.prompt_tokens,
        oracle.usage.completion_tokens,
    )


@pytest.mark.parametrize("name", ["system_and_user", "tool_required"])
def test_streams_agree(
    name: str, litellm_module: Any, gateway: Proc, anthropic_upstream: MockUpstream
) -> None:
    case = CASES[name]
    oracle_chunks = _via_litellm(litellm_module, anthropic_upstream, case, stream=True)
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    our_chunks = list(client.chat.completions.create(model="claude-first", stream=True, **case))

    def summary(chunks: list[Any]) -> tuple[str, str, str | None]:
        text, arguments, finish = "", "", None
        for chunk in chunks:
            for choice in chunk.choices or []:
                text += choice.delta.content or ""
                for call in choice.delta.tool_calls or []:
                    arguments += (call.function.arguments or "") if call.function else ""
                finish = choice.finish_reason or finish
        return text, arguments, finish

    assert summary(our_chunks) == summary(oracle_chunks)


def test_litellm_stays_off_the_openai_path() -> None:
    # The gateway process never imports litellm unless a litellm provider is configured.
    import subprocess
    import sys

    code = (
        "import sys; import gateway.http.app, gateway.cli.main, gateway.providers.openai, "
        "gateway.providers.anthropic; print('litellm' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}
    )
    assert out.stdout.strip() == "False", out.stderr
