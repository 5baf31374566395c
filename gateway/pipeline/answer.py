"""The answer, in the client's protocol: a whole one, a stream relayed event by event, or an
error — each with the headers that say how it was served (`x-request-id`, the attempts,
the route, the provider and model, what a translation left out)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.errors import (
    ContextTooLong,
    InvalidRequest,
    SpilloverError,
    UpstreamBadRequest,
)
from gateway.metrics import GatewayMetrics
from gateway.pipeline.attempt import AttemptRunner
from gateway.pipeline.context import RequestContext
from gateway.pipeline.ingress.base import ClientProtocol
from gateway.pipeline.ports import HeaderList, Reply
from gateway.pipeline.prepare import printable
from gateway.pipeline.relay import relay
from gateway.pipeline.served import Served
from gateway.providers import finish
from gateway.providers.upstream_errors import answer_object
from policies.route import Route

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
    keep_row: Callable[[RequestContext], None]

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
        ctx.usage = response.usage
        if ctx.traced:
            ctx.finish_reasons = finish.from_object(response.protocol, answer_object(response))
        body = await protocol.answer(ctx, response)  # UpstreamFailure: a shape we cannot read
        await self._whole_json(ctx, reply, 200, body, answer_headers(ctx))
        await self.attempts.outcomes.succeeded(ctx, route, served)

    async def stream(
        self,
        ctx: RequestContext,
        protocol: ClientProtocol,
        route: Route,
        served: Served,
        reply: Reply,
    ) -> None:
        stream = served.stream
        assert stream is not None and served.events is not None
        ctx.status = 200
        await reply.start(200, [*_SSE_HEADERS, *answer_headers(ctx)])
        client = protocol.stream(ctx, stream.protocol, reply)
        await client.write(served.first_event)
        ctx.bytes_sent = True
        ctx.ttft_s = ctx.elapsed()
        await self.attempts.outcomes.succeeded(ctx, route, served)
        try:
            ctx.usage = await relay(ctx, route, served, self.attempts, self.metrics, client)
        finally:
            self.keep_row(ctx)
            await reply.end()
        if ctx.status == 200 and ctx.ttft_s is not None and not ctx.resumed:
            self.attempts.outcomes.stream_finished(
                served.target, ctx.ttft_s, ctx.elapsed(), ctx.usage.completion_tokens
            )

    def dropped(self, ctx: RequestContext, dropped: list[str]) -> None:
        """A translated target served without what it could not carry: counted, and told
        in `x-spillover-dropped`."""
        ctx.dropped = dropped
        m = self.metrics
        for item in dropped:
            m.child(m.translation_dropped, ctx.route_name, ctx.ingress, _what(item)).inc()

    async def error(
        self, ctx: RequestContext, protocol: ClientProtocol, exc: SpilloverError, reply: Reply
    ) -> None:
        ctx.error_class = exc.error_class
        if isinstance(exc, UpstreamBadRequest):
            # The upstream judged the request invalid: the client's fault, said as such.
            exc = InvalidRequest(exc.message, param=exc.param)
        elif isinstance(exc, ContextTooLong):
            # No target could hold the prompt: the client's to shorten, as OpenAI says it.
            exc = InvalidRequest(exc.message, param="messages", code=exc.code)
        status, body, headers = protocol.error(exc, ctx.request_id)
        await self._whole_json(ctx, reply, status, body, [*trace_headers(ctx), *headers])

    async def _whole_json(
        self, ctx: RequestContext, reply: Reply, status: int, body: bytes, headers: HeaderList
    ) -> None:
        """A whole answer, the row kept just before its body leaves."""
        ctx.status = status
        await reply.start(status, json_head(body, headers))
        self.keep_row(ctx)
        await reply.end(body)


def answer_headers(ctx: RequestContext) -> HeaderList:
    """A served answer's headers: the trace, and Anthropic's `request-id` for its SDKs
    (an error answer carries its protocol's own)."""
    headers = trace_headers(ctx)
    if ctx.ingress == "anthropic":
        headers.append((b"request-id", ctx.request_id.encode()))
    return headers


def trace_headers(ctx: RequestContext) -> HeaderList:
    headers = [
        (b"x-request-id", ctx.request_id.encode()),
        (b"x-spillover-attempts", str(len(ctx.attempts)).encode()),
    ]
    if ctx.client_request_id is not None:
        headers.append((b"x-client-request-id", ctx.client_request_id.encode()))
    if ctx.route_name and ctx.route is not None:
        headers.append((b"x-spillover-route", ctx.route_name.encode()))
    if ctx.reservation is not None and ctx.reservation.warnings:
        warning = "; ".join(ctx.reservation.warnings)
        headers.append((b"x-spillover-budget-warning", warning.encode()))
    target = ctx.served_by
    if target is not None:
        headers.append((b"x-spillover-provider", target.provider.encode()))
        headers.append((b"x-spillover-model", target.model.encode()))
    if ctx.dropped:
        shown = ", ".join(ctx.dropped)[:1024]  # the client's own field names, bounded
        headers.append((b"x-spillover-dropped", printable(shown.encode())[:1024].encode()))
    return headers


def _what(item: str) -> str:
    """A bounded label for a dropped item: a top-level field, a content block or a tool."""
    if item.startswith("tools["):
        return "tool"
    return "block" if "(" in item else "field"
