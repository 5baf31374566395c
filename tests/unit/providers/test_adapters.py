"""The hot-path adapters against the mock provider served on a local port in this process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from aiohttp import web

from gateway.errors import ConnectFailed, Overloaded, Timeout, UpstreamRateLimited
from gateway.mock.server import Knobs, build_app
from gateway.providers.anthropic import AnthropicAdapter
from gateway.providers.base import AttemptTimeouts, UpstreamCall, UpstreamResponse, UpstreamStream
from gateway.providers.openai import OpenAIAdapter
from policies.schema import AnthropicProvider, OpenAIProvider
from tests.support.processes import free_port

FAST = AttemptTimeouts(connect=1, first_byte=0.5, idle=0.5, total=0.5)
CHAT = {"model": "route-name", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}

Serve = Callable[[str, Knobs], "AsyncIterator[str]"]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., object]]:
    runners: list[web.AppRunner] = []

    async def start(wire: str, **knobs: object) -> str:
        runner = web.AppRunner(build_app(wire, Knobs(**knobs)))  # type: ignore[arg-type]
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


def _call(
    stream: bool,
    wants_usage: bool = False,
    body: dict[str, object] | None = None,
    timeouts: AttemptTimeouts = FAST,
) -> UpstreamCall:
    payload = dict(body or CHAT)
    if stream:
        payload["stream"] = True
    if wants_usage:
        payload["stream_options"] = {"include_usage": True}
    return UpstreamCall(
        endpoint="chat",
        body=payload,
        model="gpt-4o",
        stream=stream,
        client_wants_usage=wants_usage,
        request_id="r1",
        timeouts=timeouts,
    )


async def _openai(base: str) -> OpenAIAdapter:
    adapter = OpenAIAdapter("p", OpenAIProvider(kind="openai", api_base=base + "/v1"))
    await adapter.start()
    return adapter


async def _drain(stream: UpstreamStream) -> list[bytes]:
    return [event async for event in stream]


async def test_openai_whole_response(serve) -> None:  # type: ignore[no-untyped-def]
    adapter = await _openai(await serve("openai"))
    try:
        result = await adapter.send(_call(stream=False))
        assert isinstance(result, UpstreamResponse)
        assert orjson.loads(result.body)["choices"][0]["message"]["content"] == "Hello tok1 tok2"
        assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (
            orjson.loads(result.body)["usage"]["prompt_tokens"],
            3,
        )
    finally:
        await adapter.close()


async def test_openai_stream_hides_injected_usage_but_counts_it(serve) -> None:  # type: ignore[no-untyped-def]
    adapter = await _openai(await serve("openai"))
    try:
        stream = await adapter.send(_call(stream=True))
        assert isinstance(stream, UpstreamStream)
        events = await _drain(stream)
        assert events[-1] == b"data: [DONE]\n\n"
        assert all(b"usage" not in e for e in events)
        assert stream.usage.completion_tokens == 3
        shown = await adapter.send(_call(stream=True, wants_usage=True))
        assert isinstance(shown, UpstreamStream)
        events = await _drain(shown)
        assert orjson.loads(events[-2][6:])["usage"]["completion_tokens"] == 3
    finally:
        await adapter.close()


async def test_openai_rate_limit_and_connect_refused(serve) -> None:  # type: ignore[no-untyped-def]
    adapter = await _openai(
        await serve("openai", error_rate=1.0, error_status=429, retry_after_s=2.5)
    )
    try:
        with pytest.raises(UpstreamRateLimited) as info:
            await adapter.send(_call(stream=False))
        assert info.value.retry_after == 2.5
    finally:
        await adapter.close()
    refused = await _openai(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(ConnectFailed):
            await refused.send(_call(stream=True))
    finally:
        await refused.close()


@pytest.mark.parametrize(("stream", "phase"), [(False, "total"), (True, "first_byte")])
async def test_openai_hang_times_out_in_its_phase(serve, stream: bool, phase: str) -> None:  # type: ignore[no-untyped-def]
    adapter = await _openai(await serve("openai", hang_rate=1.0))
    try:
        started = time.monotonic()
        with pytest.raises(Timeout) as info:
            await adapter.send(_call(stream=stream))
        assert info.value.phase == phase
        assert 0.45 <= time.monotonic() - started < 1.0
    finally:
        await adapter.close()


async def test_openai_idle_timeout_and_cut_stream(serve) -> None:  # type: ignore[no-untyped-def]
    slow = await _openai(await serve("openai", tokens_per_s=1.0))
    try:
        stream = await slow.send(_call(stream=True))
        assert isinstance(stream, UpstreamStream)
        with pytest.raises(Timeout) as info:
            await _drain(stream)
        assert info.value.phase == "idle"
    finally:
        await slow.close()
    cut = await _openai(await serve("openai", cut_after=2))
    try:
        stream = await cut.send(_call(stream=True))
        assert isinstance(stream, UpstreamStream)
        seen: list[bytes] = []
        with pytest.raises(ConnectFailed):
            async for event in stream:
                seen.append(event)
        assert len(seen) == 2
    finally:
        await cut.close()


async def test_anthropic_adapter_whole_stream_and_overload(serve) -> None:  # type: ignore[no-untyped-def]
    base = await serve("anthropic")
    adapter = AnthropicAdapter("c", AnthropicProvider(kind="anthropic", api_base=base))
    await adapter.start()
    try:
        result = await adapter.send(_call(stream=False))
        assert isinstance(result, UpstreamResponse)
        completion = orjson.loads(result.body)
        assert completion["object"] == "chat.completion"
        assert completion["choices"][0]["message"]["content"] == "Hello tok1 tok2"
        stream = await adapter.send(_call(stream=True, wants_usage=True))
        assert isinstance(stream, UpstreamStream)
        events = await _drain(stream)
        assert events[-1] == b"data: [DONE]\n\n"
        assert stream.usage.completion_tokens == 3
    finally:
        await adapter.close()
    overloaded = AnthropicAdapter(
        "c",
        AnthropicProvider(
            kind="anthropic", api_base=await serve("anthropic", error_rate=1.0, error_status=529)
        ),
    )
    await overloaded.start()
    try:
        with pytest.raises(Overloaded):
            await overloaded.send(_call(stream=False))
    finally:
        await overloaded.close()
