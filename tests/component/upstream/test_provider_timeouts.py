"""The provider's phases on the upstream client: a whole answer is bounded by `total` alone
(an upstream sends a non-streamed answer's head only when the answer is done), a stream's
head by `first_byte`."""

from __future__ import annotations

import orjson
import pytest

from gateway.errors import Timeout
from gateway.pipeline.timeouts import timeouts_of
from gateway.providers.base import UpstreamCall, UpstreamResponse
from gateway.providers.openai import OpenAIAdapter
from policies.schema import OpenAIProvider
from tests.support.raw_upstream import answer, raw_upstream

COMPLETION = orjson.dumps(
    {"choices": [{"message": {"role": "assistant", "content": "hi"}}],
     "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
)  # fmt: skip


def _call(config: OpenAIProvider, stream: bool) -> UpstreamCall:
    return UpstreamCall(
        endpoint="chat",
        body={"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
        model="m",
        stream=stream,
        client_wants_usage=False,
        request_id="r",
        timeouts=timeouts_of(config.timeouts),
    )


async def test_a_slow_whole_answer_has_until_total_and_a_slow_stream_until_first_byte() -> None:
    async with raw_upstream(lambda _seen: [0.3, answer(COMPLETION)]) as up:
        config = OpenAIProvider(
            kind="openai",
            api_base=up.url("/v1"),
            timeouts={"first_byte_ms": 100, "idle_ms": 100, "total_ms": 3000},
        )
        provider = OpenAIAdapter("slow", config)
        await provider.start()
        whole = await provider.send(_call(config, stream=False))
        assert isinstance(whole, UpstreamResponse) and whole.usage.completion_tokens == 1
        with pytest.raises(Timeout) as late:
            await provider.send(_call(config, stream=True))
        assert late.value.phase == "first_byte"
        await provider.close()
