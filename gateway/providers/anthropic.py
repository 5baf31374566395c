"""`kind: anthropic` — the Messages API. OpenAI chat requests are translated there and the
answers back, streams included (`gateway.providers.translate.openai_anthropic`); a request
that arrived as an Anthropic Messages request goes as sent, only the model replaced, and its
answer comes back as Anthropic sent it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.errors import Unsupported
from gateway.providers.base import (
    ANTHROPIC,
    NativeRequest,
    UpstreamCall,
    UpstreamResponse,
    UpstreamStream,
)
from gateway.providers.cache_hints import anthropic_breakpoints, count_markers
from gateway.providers.http import HTTPStream, PooledHTTPProvider
from gateway.providers.sse import DONE, data_event, data_of, ended_early, event_name
from gateway.providers.translate.openai_anthropic import (
    StreamTranslator,
    request_to_anthropic,
    response_from_anthropic,
    usage_from_anthropic,
)
from gateway.providers.upstream_errors import from_stream_error, upstream_object
from gateway.upstream.client import Answer
from policies.schema import AnthropicProvider


class AnthropicAdapter(PooledHTTPProvider):
    supports = frozenset({"chat"})
    native_protocols = frozenset({ANTHROPIC})

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
        if call.native is not None and call.native.protocol == ANTHROPIC:
            return await self._send_native(call, call.native)
        body = request_to_anthropic(call.body, call.model, self._config.default_max_tokens)
        if call.cache_hint is not None and call.cache_hint.anthropic_ttl is not None:
            body = anthropic_breakpoints(body, call.cache_hint)
        if not call.stream:
            raw, headers = await self._fetch(self._url, body, self._headers, call.timeouts)
            completion, usage = response_from_anthropic(upstream_object(raw))
            return UpstreamResponse(orjson.dumps(completion), usage, headers, parsed=completion)
        response = await self._open_stream(self._url, body, self._headers, call.timeouts)
        return _AnthropicStream(response, call)

    async def _send_native(
        self, call: UpstreamCall, native: NativeRequest
    ) -> UpstreamResponse | UpstreamStream:
        """The client's Messages request as sent; breakpoints added only when the client
        placed none of its own."""
        body = {**native.body, "model": call.model}
        hint = call.cache_hint
        if hint is not None and hint.anthropic_ttl is not None and count_markers(body) == 0:
            body = anthropic_breakpoints(body, hint)
        headers = _with_betas(self._headers, native.headers.get("anthropic-beta"))
        if not call.stream:
            raw, answer_headers = await self._fetch(self._url, body, headers, call.timeouts)
            answer = upstream_object(raw)
            usage = usage_from_anthropic(answer.get("usage") or {})
            return UpstreamResponse(raw, usage, answer_headers, ANTHROPIC, answer)
        response = await self._open_stream(self._url, body, headers, call.timeouts)
        return _NativeStream(response, call)


def _with_betas(headers: dict[str, str], client_betas: str | None) -> dict[str, str]:
    """The provider's headers with the client's beta features added to any it sets."""
    if not client_betas:
        return headers
    own = headers.get("anthropic-beta")
    return {**headers, "anthropic-beta": f"{own},{client_betas}" if own else client_betas}


class _AnthropicStream(HTTPStream):
    """Anthropic's events translated into OpenAI chunks."""

    def __init__(self, answer: Answer, call: UpstreamCall) -> None:
        super().__init__(answer, call)
        self._translator = StreamTranslator(include_usage=call.client_wants_usage)
        self.usage = self._translator.usage

    async def _events(self) -> AsyncIterator[bytes]:
        translator = self._translator
        async for event in self._read():
            data = data_of(event)
            if not data:
                continue
            payload: Any = upstream_object(data)
            if payload.get("type") == "error":
                raise from_stream_error(payload.get("error") or {})
            for chunk in translator.feed(payload):
                yield data_event(chunk)
            self.usage = translator.usage
            if translator.finished:
                self._answer.release()
                yield DONE
                return
        await self.aclose()
        raise ended_early()


class _NativeStream(HTTPStream):
    """Anthropic's events passed through as they came, read only for their usage and for
    an error event (which becomes our failure, so the relay ends the stream its way)."""

    protocol = ANTHROPIC

    def __init__(self, answer: Answer, call: UpstreamCall) -> None:
        super().__init__(answer, call)
        self._reported: dict[str, Any] = {}

    async def _events(self) -> AsyncIterator[bytes]:
        async for event in self._read():
            kind = event_name(event)
            if kind in ("message_start", "message_delta", "error"):
                payload: Any = upstream_object(data_of(event) or b"")
                if kind == "error":
                    raise from_stream_error(payload.get("error") or {})
                self._see_usage(kind, payload)
            yield event + b"\n\n"
            if kind == "message_stop":
                self._answer.release()
                return
        await self.aclose()
        raise ended_early()

    def _see_usage(self, kind: str, payload: dict[str, Any]) -> None:
        if kind == "message_start":
            self._reported = dict((payload.get("message") or {}).get("usage") or {})
        else:
            self._reported.update(payload.get("usage") or {})
        self.usage = usage_from_anthropic(self._reported)
