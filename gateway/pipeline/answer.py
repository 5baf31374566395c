"""The answer, in the client's protocol: a whole one, a stream relayed event by event, or an
error — each with the headers that say how it was served (`x-request-id`, the attempts,
the route, the provider and model, what a translation left out)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from gateway.accounting.row import LedgerRow
from gateway.errors import (
    ContextTooLong,
    InvalidRequest,
    SpilloverError,
    UpstreamBadRequest,
)
from gateway.metrics import GatewayMetrics
from gateway.pipeline.attempt import AttemptRunner
from gateway.pipeline.context import RequestContext, Reservation
from gateway.pipeline.ingress.base import ClientProtocol
from gateway.pipeline.ports import HeaderList, Reply
from gateway.pipeline.prepare import printable
from gateway.pipeline.relay import relay
from gateway.pipeline.response_cache import Gatherer, cache_told, replayed
from gateway.pipeline.served import Served
from gateway.providers import finish
from gateway.providers.base import ANTHROPIC, UpstreamResponse, Usage
from gateway.providers.upstream_errors import answer_object
from gateway.state.answers import StoredAnswer
from policies.route import Route, Target

JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def json_head(body: bytes, headers: HeaderList) -> HeaderList:
    return [JSON, (b"content-length", str(len(body)).encode()), *headers]


async def send_json(reply: Reply, status: int, body: bytes, headers: HeaderList) -> None:
    """A whole JSON answer, its length told."""
    await reply.start(status, json_head(body, headers))
    await reply.end(body)


@dataclass(frozen=True, slots=True)
class Answerer:
    """The serve and relay stages' way out to the client, for one config generation. Each
    answer keeps the request's row just before its last part (`keep_row`)."""

    metrics: GatewayMetrics
    attempts: AttemptRunner
    keep_row: Callable[[RequestContext], LedgerRow]

    async def whole(
        self,
        ctx: RequestContext,
        protocol: ClientProtocol,
        route: Route,
        served: Served,
        reply: Reply,
    ) -> None:
        response = served.response
        assert response is not None
        ctx.outcome.usage = response.usage
        if ctx.traced:
            ctx.outcome.finish_reasons = finish.from_object(
                response.protocol, answer_object(response)
            )
        body = await protocol.answer(ctx, response)  # UpstreamFailure: a shape we cannot read
        await self._whole_json(ctx, reply, 200, body, [*_served_as(ctx), *cache_told(ctx)])
        await self.attempts.outcomes.succeeded(ctx, route, served)

    async def cached(
        self, ctx: RequestContext, protocol: ClientProtocol, stored: StoredAnswer, reply: Reply
    ) -> None:
        """A stored answer, as the client's protocol answers it now (new ids; a Responses
        request's response stored again). Nothing was processed: no tokens, cost 0."""
        response = UpstreamResponse(
            stored.body,
            Usage(**stored.usage),
            protocol=stored.protocol,  # type: ignore[arg-type]
        )
        ctx.outcome.served_by = Target(provider=stored.provider, model=stored.model)
        told = [*_served_as(ctx), *cache_told(ctx, time.time() - stored.stored_at)]
        events = replayed(stored, ctx.asked.client_wants_usage) if ctx.asked.stream else None
        if events is not None:
            await self._replay(ctx, protocol, stored.protocol, events, told, reply)
            return
        ctx.outcome.usage = response.usage
        body = await protocol.answer(ctx, response)
        ctx.outcome.usage = None
        await self._whole_json(ctx, reply, 200, body, told)

    async def _replay(
        self,
        ctx: RequestContext,
        protocol: ClientProtocol,
        wire: str,
        events: list[bytes],
        told: HeaderList,
        reply: Reply,
    ) -> None:
        """A stored answer streamed in the client's protocol, as a live one would be."""
        ctx.outcome.status = 200
        head = told_headers(StreamHead.of(ctx), ctx.reservation)
        await reply.start(200, [*_SSE_HEADERS, *head, *told])
        client = protocol.stream(ctx, wire, reply)
        try:
            for event in events:
                await client.write(event)
                if not ctx.outcome.bytes_sent:
                    ctx.outcome.bytes_sent = True
                    ctx.outcome.ttft_s = ctx.elapsed()
        finally:
            self.keep_row(ctx)
            await reply.end()

    async def stream(
        self,
        ctx: RequestContext,
        protocol: ClientProtocol,
        route: Route,
        served: Served,
        reply: Reply,
        gathered: Gatherer | None = None,
    ) -> None:
        """Relay a stream; `gathered` sees each upstream event (the response cache)."""
        stream = served.stream
        assert stream is not None and served.events is not None
        if gathered is not None:
            gathered.see(served.first_event)
            served.events = _seen(served.events, gathered)
        ctx.outcome.status = 200
        # The stream's headers leave before its outcome is known, so before its row: they
        # say what is known at its first event, as a row would.
        head = told_headers(StreamHead.of(ctx), ctx.reservation)
        await reply.start(200, [*_SSE_HEADERS, *head, *_served_as(ctx), *cache_told(ctx)])
        client = protocol.stream(ctx, stream.protocol, reply)
        await client.write(served.first_event)
        ctx.outcome.bytes_sent = True
        ctx.outcome.ttft_s = ctx.elapsed()
        await self.attempts.outcomes.succeeded(ctx, route, served)
        try:
            ctx.outcome.usage = await relay(ctx, route, served, self.attempts, self.metrics, client)
        finally:
            self.keep_row(ctx)
            await reply.end()
        if ctx.outcome.status == 200 and ctx.outcome.ttft_s is not None and not ctx.outcome.resumed:
            self.attempts.outcomes.stream_finished(
                served.target,
                ctx.outcome.ttft_s,
                ctx.elapsed(),
                ctx.outcome.usage.completion_tokens,
            )

    def dropped(self, ctx: RequestContext, dropped: list[str]) -> None:
        """A translated target served without what it could not carry: counted, and told
        in `x-spillover-dropped`."""
        ctx.outcome.dropped = dropped
        m = self.metrics
        for item in dropped:
            m.child(m.translation_dropped, ctx.route_name, ctx.ingress, _what(item)).inc()

    async def error(
        self, ctx: RequestContext, protocol: ClientProtocol, exc: SpilloverError, reply: Reply
    ) -> None:
        ctx.outcome.error_class = exc.error_class
        if isinstance(exc, UpstreamBadRequest):
            # The upstream judged the request invalid: the client's fault, said as such.
            exc = InvalidRequest(exc.message, param=exc.param)
        elif isinstance(exc, ContextTooLong):
            # No target could hold the prompt: the client's to shorten, as OpenAI says it.
            exc = InvalidRequest(exc.message, param="messages", code=exc.code)
        status, body, headers = protocol.error(exc, ctx.request_id)
        await self._whole_json(ctx, reply, status, body, headers)

    async def _whole_json(
        self, ctx: RequestContext, reply: Reply, status: int, body: bytes, headers: HeaderList
    ) -> None:
        """A whole answer: its row kept before it leaves, its headers read from the row."""
        ctx.outcome.status = status
        row = self.keep_row(ctx)
        told = told_headers(row, ctx.reservation)
        await reply.start(status, json_head(body, [*told, *headers]))
        await reply.end(body)


@dataclass(frozen=True, slots=True)
class StreamHead:
    """What a stream's headers say of how it is served, as its row will say it: they leave
    at its first event, before its outcome and its row."""

    request_id: str
    client_request_id: str | None
    route: str | None
    attempts: int
    provider: str | None
    model: str | None
    dropped: str | None

    @classmethod
    def of(cls, ctx: RequestContext) -> StreamHead:
        target = ctx.outcome.served_by
        return cls(
            ctx.request_id,
            ctx.client_request_id,
            ctx.route_label,
            len(ctx.outcome.attempts),
            target.provider if target else None,
            target.model if target else None,
            ctx.outcome.dropped_text,
        )


def told_headers(told: LedgerRow | StreamHead, reservation: Reservation | None) -> HeaderList:
    """`x-request-id`, the attempts, the route, who served, what a translation left out,
    and the budgets' warnings."""
    headers = [
        (b"x-request-id", told.request_id.encode()),
        (b"x-spillover-attempts", str(told.attempts).encode()),
    ]
    if told.client_request_id is not None:
        headers.append((b"x-client-request-id", told.client_request_id.encode()))
    if told.route is not None:
        headers.append((b"x-spillover-route", told.route.encode()))
    if reservation is not None and reservation.warnings:
        warning = "; ".join(reservation.warnings)
        headers.append((b"x-spillover-budget-warning", warning.encode()))
    if told.provider is not None and told.model is not None:
        headers.append((b"x-spillover-provider", told.provider.encode()))
        headers.append((b"x-spillover-model", told.model.encode()))
    if told.dropped:  # the client's own field names, bounded
        headers.append((b"x-spillover-dropped", printable(told.dropped.encode())[:1024].encode()))
    return headers


async def _seen(events: AsyncIterator[bytes], gathered: Gatherer) -> AsyncIterator[bytes]:
    async for event in events:
        gathered.see(event)
        yield event


def _served_as(ctx: RequestContext) -> HeaderList:
    """A served answer's `request-id`, which Anthropic's SDKs read (an error answer carries
    its protocol's own)."""
    return [(b"request-id", ctx.request_id.encode())] if ctx.ingress == ANTHROPIC else []


def _what(item: str) -> str:
    """A bounded label for a dropped item: a top-level field, a content block or a tool."""
    if item.startswith("tools["):
        return "tool"
    return "block" if "(" in item else "field"
