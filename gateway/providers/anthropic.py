"""`kind: anthropic` — OpenAI chat requests sent to the Anthropic Messages API and the
answers translated back, streams included (see `gateway.providers.translate.openai_anthropic`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import orjson

from gateway.errors import Unsupported
from gateway.providers.base import UpstreamCall, UpstreamResponse, UpstreamStream
from gateway.providers.cache_hints import anthropic_breakpoints
from gateway.providers.http import PooledHTTPProvider
from gateway.providers.sse import DONE, data_of, ended_early, iter_events
from gateway.providers.translate.openai_anthropic import (
    StreamTranslator,
    request_to_anthropic,
    response_from_anthropic,
)
from gateway.providers.upstream_errors import from_stream_error, upstream_object
from policies.schema import AnthropicProvider


class AnthropicAdapter(PooledHTTPProvider):
    supports = frozenset({"chat"})

    def __init__(self, name: str, config: AnthropicProvider) -> None:
        super().__init__(name, config)
        self._config = config
        self._url = config.api_base.rstrip("/") + "/v1/messages"
        self._headers = {
            "Content-Type": "application/json",
            "anthropic-version": config.anthropic_version,
            **config.headers,
        }
        if config.api_key is not None and config.api_key.get_secret_value():
            self._headers["x-api-key"] = config.api_key.get_secret_value()

    async def send(self, call: UpstreamCall) -> UpstreamResponse | UpstreamStream:
        if call.endpoint != "chat":
            raise Unsupported(f"Anthropic serves chat only, not {call.endpoint}")
        body = request_to_anthropic(call.body, call.model, self._config.default_max_tokens)
        if call.cache_hint is not None and call.cache_hint.anthropic_ttl is not None:
            body = anthropic_breakpoints(body, call.cache_hint)
        if not call.stream:
            raw, headers = await self._fetch(self._url, body, self._headers, call.timeouts)
            completion, usage = response_from_anthropic(upstream_object(raw))
            return UpstreamResponse(orjson.dumps(completion), usage, headers)
        response = await self._open_stream(self._url, body, self._headers, call.timeouts)
        return _AnthropicStream(response, call)


class _AnthropicStream(UpstreamStream):
    def __init__(self, response: aiohttp.ClientResponse, call: UpstreamCall) -> None:
        self._response = response
        self._call = call
        self._translator = StreamTranslator(include_usage=call.client_wants_usage)
        self.headers: Mapping[str, str] = response.headers
        self.usage = self._translator.usage

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        timeouts = self._call.timeouts
        translator = self._translator
        async for event in iter_events(self._response, timeouts.first_byte, timeouts.idle):
            data = data_of(event)
            if not data:
                continue
            payload: Any = upstream_object(data)
            if payload.get("type") == "error":
                raise from_stream_error(payload.get("error") or {})
            for chunk in translator.feed(payload):
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
            self.usage = translator.usage
            if translator.finished:
                self._response.release()
                yield DONE
                return
        await self.aclose()
        raise ended_early()

    async def aclose(self) -> None:
        if not self._response.closed:
            self._response.close()
