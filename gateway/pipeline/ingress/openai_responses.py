"""OpenAI's Responses API (`POST /v1/responses`). The gateway keeps the conversation itself:
a `previous_response_id` is expanded from its own store into the full history, so any target
can take the next turn — a native Responses target gets the request as sent with that
history as its input (`store: false`), every other one its chat completions translation.
The answer comes back as a Response under the gateway's id, stored (unless `store: false`)
before its last byte leaves."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import Counter

from gateway.error_wire import error_body, protocol_headers
from gateway.errors import LedgerUnavailable, NotFound, SpilloverError
from gateway.pipeline.context import Asked, RequestContext
from gateway.pipeline.ingress.base import (
    ClientProtocol,
    TranslatedStream,
    unreadable,
)
from gateway.pipeline.ingress.exchange import Exchange
from gateway.pipeline.ingress.responses_validate import validate_responses
from gateway.pipeline.ingress.shared_account import check_responses
from gateway.pipeline.ports import HeaderList, Headers, Reply
from gateway.pipeline.relay import ClientStream
from gateway.providers.base import RESPONSES, NativeRequest, UpstreamResponse
from gateway.providers.sse import data_of, event_name
from gateway.providers.translate.chat_form import Event, random_id, sse
from gateway.providers.translate.openai_responses import (
    ResponsesStreamWriter,
    output_from_chat,
    response_object,
)
from gateway.providers.translate.responses_openai import input_items, request_to_chat
from gateway.providers.upstream_errors import answer_object, upstream_object
from gateway.state.responses import ResponseStore
from policies.schema import WireProtocol
from policies.schema_base import Endpoint

log = logging.getLogger("spillover.responses")

Keep = Callable[["Exchange", dict[str, Any]], Awaitable[None]]  # stores a finished response
_LIFECYCLE = frozenset(
    {"response.created", "response.in_progress", "response.completed", "response.incomplete",
     "response.failed", "response.queued"}
)  # fmt: skip


class ResponsesProtocol(ClientProtocol):
    ingress: WireProtocol = "responses"
    endpoint: Endpoint = "chat"

    def __init__(self, store: ResponseStore, unstored: Counter) -> None:
        self._store = store
        self._unstored = unstored

    def validate(self, body: Any) -> None:
        validate_responses(body)

    async def read(self, ctx: RequestContext, body: dict[str, Any], headers: Headers) -> Asked:
        assert ctx.principal is not None and ctx.route is not None
        check_responses(body, ctx.route_name, ctx.route.upstream_objects)
        owner = ctx.principal.tenant
        history: list[dict[str, Any]] = []
        previous = body.get("previous_response_id")
        if previous:
            found = await self._store.history(previous, owner)
            if found is None:
                raise NotFound(
                    f"Previous response with id '{previous[:64]}' not found.",
                    param="previous_response_id",
                )
            ctx.releases.append(functools.partial(self._store.release, found))
            history = found.items
        if body.get("store") is not False:
            await self._store.admit_storing(owner)
        items = [_with_id(item) for item in input_items(body)]
        translated = request_to_chat(body, history, body["model"])
        native = {k: v for k, v in body.items() if k != "previous_response_id"}
        native["input"] = [*history, *items]
        native["store"] = False  # the conversation is ours; the upstream keeps nothing
        return Asked(
            body=translated.body,
            stream=bool(body.get("stream")),
            client_wants_usage=True,
            native=NativeRequest(RESPONSES, native),
            untranslatable=tuple(translated.left_out),
            reasoning_effort=translated.reasoning_effort,
            exchange=Exchange(
                body, random_id("resp_"), owner, items, int(time.time()), translated.tool_names
            ),
        )

    async def answer(self, ctx: RequestContext, response: UpstreamResponse) -> bytes:
        exchange = _exchange(ctx)
        assert ctx.outcome.served_by is not None
        if response.protocol == RESPONSES:
            answer = _as_ours(answer_object(response), exchange)
        else:
            completion = answer_object(response)
            try:
                output, status = output_from_chat(completion, exchange.tool_names)
            except (AttributeError, TypeError, KeyError, IndexError) as exc:
                raise unreadable() from exc
            answer = response_object(
                exchange.body, exchange.response_id, ctx.outcome.served_by.model, output, status,
                response.usage, exchange.created_at,
            )  # fmt: skip
        await self._keep(exchange, answer)
        return orjson.dumps(answer)

    def stream(self, ctx: RequestContext, upstream: str, client: Reply) -> ClientStream:
        assert ctx.outcome.served_by is not None
        exchange = _exchange(ctx)
        if upstream == RESPONSES:
            return NativeResponsesEvents(client, exchange, ctx.outcome.served_by.model, self._keep)
        writer = ResponsesStreamWriter(
            exchange.body, exchange.response_id, ctx.outcome.served_by.model, exchange.tool_names
        )
        return TranslatedResponsesEvents(client, exchange, writer, self._keep)

    def error(self, exc: SpilloverError, request_id: str) -> tuple[int, bytes, HeaderList]:
        return exc.status, error_body(exc), protocol_headers(exc)

    async def _keep(self, exchange: Exchange, response: dict[str, Any]) -> None:
        """Store the finished response, unless the client said `store: false`. A store that
        is down costs the chain, not the answer the client already paid for."""
        if not exchange.store:
            return
        try:
            await self._store.save(exchange.stored(response))
        except LedgerUnavailable:
            self._unstored.inc()
            log.warning("response %s answered but not stored", exchange.response_id)


def _exchange(ctx: RequestContext) -> Exchange:
    exchange = ctx.asked.exchange
    assert exchange is not None, "a Responses request is read with its exchange"
    return exchange


def _with_id(item: dict[str, Any]) -> dict[str, Any]:
    if item.get("id") or item.get("type") not in ("message", None):
        return item
    return {"id": random_id("msg_"), **item}


def _as_ours(response: dict[str, Any], exchange: Exchange) -> dict[str, Any]:
    """A native target's Response under the gateway's id and the client's own settings."""
    return {
        **response,
        "id": exchange.response_id,
        "previous_response_id": exchange.body.get("previous_response_id"),
        "store": exchange.store,
    }


class TranslatedResponsesEvents(TranslatedStream):
    """A chat target's chunks rewritten as the Responses event sequence; the finished
    response is stored before its last event leaves."""

    def __init__(
        self, client: Reply, exchange: Exchange, writer: ResponsesStreamWriter, keep: Keep
    ) -> None:
        super().__init__(client, writer)
        self._exchange = exchange
        self._responses = writer
        self._keep = keep

    async def _done(self) -> list[Event]:
        events = list(self._responses.close())
        assert self._responses.final is not None
        await self._keep(self._exchange, self._responses.final)
        return events

    async def error(self, exc: SpilloverError) -> None:
        await self._send(self._responses.fail("server_error", exc.message))


class NativeResponsesEvents:
    """A Responses target's events passed through; the lifecycle events (which carry the
    Response) are rewritten to the gateway's id, and the finished one is stored."""

    def __init__(self, client: Reply, exchange: Exchange, model: str, keep: Keep) -> None:
        self._client = client
        self._exchange = exchange
        self._model = model
        self._keep = keep
        self._sequence = -1
        self.disconnected = client.disconnected

    async def write(self, chunk: bytes) -> None:
        name = event_name(chunk)
        if name not in _LIFECYCLE:
            self._sequence += 1
            await self._client.write(chunk)
            return
        data = upstream_object(data_of(chunk.rstrip(b"\n")) or b"")
        self._sequence = int(data.get("sequence_number") or self._sequence + 1)
        data["response"] = _as_ours(data.get("response") or {}, self._exchange)
        if name in ("response.completed", "response.incomplete"):
            await self._keep(self._exchange, data["response"])
        await self._client.write(sse((name, data)))

    async def error(self, exc: SpilloverError) -> None:
        exchange = self._exchange
        failed = response_object(
            exchange.body, exchange.response_id, self._model, [], "failed", None,
            exchange.created_at, {"code": "server_error", "message": exc.message},
        )  # fmt: skip
        event = {"response": failed, "sequence_number": self._sequence + 1}
        await self._client.write(sse(("response.failed", {"type": "response.failed", **event})))
