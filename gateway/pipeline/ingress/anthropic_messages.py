"""Anthropic's Messages API (`POST /v1/messages`): keys by `x-api-key` or `Bearer`, the body
validated as Anthropic would and kept as sent for Anthropic targets; every other target gets
its chat completions translation, and its answer or stream comes back as Anthropic's."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.error_wire import anthropic_error, status_and_type
from gateway.errors import InvalidRequest, SpilloverError
from gateway.pipeline.context import Asked, RequestContext
from gateway.pipeline.ingress.anthropic_validate import validate_messages
from gateway.pipeline.ingress.base import (
    ClientProtocol,
    TranslatedStream,
    unreadable,
)
from gateway.pipeline.ingress.shared_account import check_messages
from gateway.pipeline.ports import HeaderList, Headers, Reply
from gateway.pipeline.relay import ClientStream
from gateway.providers.base import ANTHROPIC, NativeRequest, UpstreamResponse
from gateway.providers.translate.anthropic_openai import (
    AnthropicStreamWriter,
    request_to_openai,
    response_to_anthropic,
)
from gateway.providers.translate.chat_form import Event, sse
from gateway.providers.upstream_errors import answer_object
from policies.schema import WireProtocol
from policies.schema_base import Endpoint

MAX_BETA_HEADER = 1024


class AnthropicProtocol(ClientProtocol):
    ingress: WireProtocol = "anthropic"
    endpoint: Endpoint = "chat"

    def credentials(self, headers: Headers) -> bytes | None:
        key = headers.get(b"x-api-key")
        if key is not None:
            return b"Bearer " + key.strip()
        return headers.get(b"authorization")

    def validate(self, body: Any) -> None:
        validate_messages(body)

    async def read(self, ctx: RequestContext, body: dict[str, Any], headers: Headers) -> Asked:
        assert ctx.route is not None
        check_messages(body, ctx.route_name, ctx.route.upstream_objects)
        translated = request_to_openai(body, body["model"])
        return Asked(
            body=translated.body,
            stream=bool(body.get("stream")),
            client_wants_usage=True,  # Anthropic always reports usage; billing needs it
            native=NativeRequest(ANTHROPIC, body, forwarded_headers(headers)),
            untranslatable=tuple(translated.left_out),
            reasoning_effort=translated.reasoning_effort,
        )

    async def answer(self, ctx: RequestContext, response: UpstreamResponse) -> bytes:
        if response.protocol == ANTHROPIC:
            return response.body
        assert ctx.outcome.served_by is not None
        completion = answer_object(response)
        try:
            message = response_to_anthropic(completion, ctx.outcome.served_by.model, response.usage)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise unreadable() from exc
        return orjson.dumps(message)

    def stream(self, ctx: RequestContext, upstream: str, client: Reply) -> ClientStream:
        if upstream == ANTHROPIC:
            return AnthropicEvents(client, ctx.request_id)
        assert ctx.outcome.served_by is not None
        writer = AnthropicStreamWriter(ctx.outcome.served_by.model, ctx.prompt_estimate or 0)
        return TranslatedEvents(client, ctx.request_id, writer)

    def error(self, exc: SpilloverError, request_id: str) -> tuple[int, bytes, HeaderList]:
        return anthropic_error(exc, request_id)


def forwarded_headers(headers: Headers) -> dict[str, str]:
    """The client headers an Anthropic target receives: `anthropic-beta` alone (features,
    never hosts or credentials)."""
    beta = headers.get(b"anthropic-beta")
    if beta is None:
        return {}
    if len(beta) > MAX_BETA_HEADER or not beta.isascii() or not beta.decode().isprintable():
        raise InvalidRequest(
            f"anthropic-beta must be printable ASCII of at most {MAX_BETA_HEADER} bytes",
            param="anthropic-beta",
        )
    return {"anthropic-beta": beta.decode()}


def error_event(exc: SpilloverError, request_id: str) -> bytes:
    """Anthropic's in-stream error: what a client sees when a stream breaks after its
    first byte, rather than a silent end."""
    _, kind = status_and_type(exc)
    return sse(
        (
            "error",
            {
                "type": "error",
                "error": {"type": kind, "message": exc.message},
                "request_id": request_id,
            },
        )
    )


class AnthropicEvents:
    """An Anthropic target's events, passed through as they came."""

    def __init__(self, client: Reply, request_id: str) -> None:
        self.write = client.write
        self.disconnected = client.disconnected
        self._request_id = request_id

    async def error(self, exc: SpilloverError) -> None:
        await self.write(error_event(exc, self._request_id))


class TranslatedEvents(TranslatedStream):
    """An OpenAI-wire target's chunks rewritten as Anthropic's event sequence."""

    def __init__(self, client: Reply, request_id: str, writer: AnthropicStreamWriter) -> None:
        super().__init__(client, writer)
        self._request_id = request_id
        self._anthropic = writer

    async def _done(self) -> list[Event]:
        return list(self._anthropic.close())

    async def error(self, exc: SpilloverError) -> None:
        await self._client.write(error_event(exc, self._request_id))
