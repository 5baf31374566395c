"""`kind: openai` — any OpenAI-wire upstream. The client's body is forwarded as received
except for `model` (and `stream_options` when we need usage the client did not ask for).
With `responses_api: true`, Responses clients' requests go to its `/responses` as sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.errors import UpstreamStatusError
from gateway.providers.base import (
    RESPONSES,
    NativeRequest,
    UpstreamCall,
    UpstreamResponse,
    UpstreamStream,
    Usage,
)
from gateway.providers.http import HTTPStream, PooledHTTPProvider
from gateway.providers.sse import DONE, data_of, ended_early, event_name
from gateway.providers.translate.openai_responses import usage_from_responses
from gateway.providers.upstream_errors import from_stream_error, upstream_object
from gateway.upstream.client import Answer
from policies.schema import OpenAIProvider

PATHS = {"chat": "/chat/completions", "completions": "/completions", "embeddings": "/embeddings"}


class OpenAIAdapter(PooledHTTPProvider):
    supports = frozenset({"chat", "completions", "embeddings"})

    def __init__(self, name: str, config: OpenAIProvider) -> None:
        super().__init__(name, config)
        self._config = config
        base = config.api_base.rstrip("/")
        self._urls = {endpoint: base + path for endpoint, path in PATHS.items()}
        self._responses_url = base + "/responses"
        self.native_protocols = frozenset({RESPONSES}) if config.responses_api else frozenset()
        self._headers = {"Content-Type": "application/json", **config.headers}
        if config.api_key is not None and config.api_key.get_secret_value():
            self._headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"

    async def send(self, call: UpstreamCall) -> UpstreamResponse | UpstreamStream:
        if call.native is not None and call.native.protocol in self.native_protocols:
            return await self._send_responses(call, call.native)
        hint = call.cache_hint
        if hint is not None and hint.openai_key and "prompt_cache_key" not in call.body:
            call.body = {**call.body, "prompt_cache_key": hint.openai_key}
        return await self.send_to(self._urls[call.endpoint], call)

    async def send_to(self, url: str, call: UpstreamCall) -> UpstreamResponse | UpstreamStream:
        """Send to this URL instead of the configured base (a pool replica)."""
        body = call.body
        if call.continuation:
            # vLLM's (and other servers') way to continue the final assistant message.
            body = {**body, "continue_final_message": True, "add_generation_prompt": False}
        headers = self._headers
        if call.request_id:
            headers = {**headers, "X-Request-Id": call.request_id}
        if not call.stream:
            raw, upstream_headers = await self._fetch(url, body, headers, call.timeouts)
            answer = upstream_object(raw)
            usage = Usage.from_openai(answer.get("usage") or {})
            return UpstreamResponse(raw, usage, upstream_headers, parsed=answer)
        inject_usage = not call.client_wants_usage
        if inject_usage:
            options = body.get("stream_options")
            body = {
                **body,
                "stream_options": {
                    **(options if isinstance(options, dict) else {}),
                    "include_usage": True,
                },
            }
        response = await self._open_stream(url, body, headers, call.timeouts)
        return _OpenAIStream(response, call, strip_usage=inject_usage)

    async def _send_responses(
        self, call: UpstreamCall, native: NativeRequest
    ) -> UpstreamResponse | UpstreamStream:
        """A Responses request as the client sent it (the gateway expanded its history)."""
        body = {**native.body, "model": call.model}
        hint = call.cache_hint
        if hint is not None and hint.openai_key and "prompt_cache_key" not in body:
            body["prompt_cache_key"] = hint.openai_key
        headers = {**self._headers, "X-Request-Id": call.request_id}
        if not call.stream:
            raw, upstream_headers = await self._fetch(
                self._responses_url, body, headers, call.timeouts
            )
            answer = upstream_object(raw)
            usage = usage_from_responses(answer.get("usage") or {})
            return UpstreamResponse(raw, usage, upstream_headers, RESPONSES, answer)
        response = await self._open_stream(self._responses_url, body, headers, call.timeouts)
        return _ResponsesStream(response, call)


class _ResponsesStream(HTTPStream):
    """A Responses event stream passed through as it came; read for its usage at the end and
    for a failure (which becomes ours, so the relay ends the stream its way)."""

    protocol = RESPONSES

    async def _events(self) -> AsyncIterator[bytes]:
        async for event in self._read():
            kind = event_name(event)
            if kind == "error":
                raise from_stream_error(upstream_object(data_of(event) or b""))
            if kind == "response.failed":
                failed = upstream_object(data_of(event) or b"").get("response") or {}
                error = failed.get("error") or {}
                raise UpstreamStatusError(
                    f"the upstream response failed: {error.get('message', '')}"
                )
            if kind in ("response.completed", "response.incomplete"):
                done = upstream_object(data_of(event) or b"").get("response") or {}
                self.usage = usage_from_responses(done.get("usage") or {})
                yield event + b"\n\n"
                self._answer.release()
                return
            yield event + b"\n\n"
        await self.aclose()
        raise ended_early()


class _OpenAIStream(HTTPStream):
    def __init__(self, answer: Answer, call: UpstreamCall, strip_usage: bool):
        super().__init__(answer, call)
        self._strip_usage = strip_usage

    async def _events(self) -> AsyncIterator[bytes]:
        done = False
        async for event in self._read():
            data = data_of(event)
            if data is None:
                continue  # comments and keep-alives are ours to drop
            if data == b"[DONE]":
                done = True
                self._answer.release()
                yield DONE
                break
            out = self._visible(data)
            if out is not None:
                yield b"data: " + out + b"\n\n"
        await self.aclose()
        if not done:
            raise ended_early()

    def _visible(self, data: bytes) -> bytes | None:
        """Capture usage; hide what the client did not ask to see; surface error events."""
        if b'"usage"' not in data and b'"error"' not in data:
            return data
        if not self._strip_usage and (b'"usage":null' in data or b'"usage": null' in data):
            return data
        payload: Any = upstream_object(data)
        error = payload.get("error")
        if isinstance(error, dict):
            raise from_stream_error(error)
        usage = payload.get("usage")
        if usage:
            self.usage = Usage.from_openai(usage)
        if not self._strip_usage:
            return data
        if usage and not payload.get("choices"):
            return None
        payload.pop("usage", None)
        return orjson.dumps(payload)
