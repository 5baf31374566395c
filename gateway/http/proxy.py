"""The `/v1/*` surface as plain ASGI: read the body within its limit, authenticate, parse
once, validate, then admit → shape → decide → attempt → account, and answer — each in the
client's own protocol (`gateway.http.ingress`): OpenAI's, or Anthropic's Messages API."""

from __future__ import annotations

import logging
import time
import traceback

from starlette.types import Message, Receive, Scope, Send

from gateway import logs
from gateway.drill.faults import FaultTable
from gateway.errors import (
    BadRequest,
    ContextTooLong,
    InternalError,
    InvalidRequest,
    LedgerUnavailable,
    MethodNotAllowed,
    SpilloverError,
    UpstreamFailure,
)
from gateway.http.auth import KeyStore, route_for
from gateway.http.body import checked_body, read_body
from gateway.http.heavy_lane import HeavyLane, failed_read
from gateway.http.ingress.anthropic_messages import AnthropicProtocol
from gateway.http.ingress.base import ClientProtocol, RawClientStream
from gateway.http.ingress.openai_chat import OpenAIProtocol
from gateway.http.ingress.openai_responses import ResponsesProtocol
from gateway.http.local_answers import COUNT_TOKENS, count_tokens, model_list
from gateway.http.stored_responses import PREFIX as STORED_RESPONSES
from gateway.http.stored_responses import stored_response
from gateway.ids import new_id
from gateway.metrics import GatewayMetrics
from gateway.pipeline.account import Accountant
from gateway.pipeline.admit import Admitter
from gateway.pipeline.attempt import AttemptRunner, Served
from gateway.pipeline.budgets import Budgets
from gateway.pipeline.context import RequestContext
from gateway.pipeline.decide import candidates
from gateway.pipeline.relay import relay
from gateway.pipeline.shape import cache_hint, shape
from gateway.providers import finish
from gateway.providers.base import Provider
from gateway.state.responses import HeavyRequest, ResponseStore
from gateway.tracing import Tracing
from policies.pool import PRIORITY_RANK, Priority
from policies.route import Route, Target
from policies.schema import GatewayConfig

log = logging.getLogger("spillover")


JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def client_protocols(
    responses: ResponseStore, metrics: GatewayMetrics
) -> dict[str, ClientProtocol]:
    """The pipeline's paths, each with the protocol its clients speak."""
    return {
        "/v1/chat/completions": OpenAIProtocol("chat"),
        "/v1/completions": OpenAIProtocol("completions"),
        "/v1/embeddings": OpenAIProtocol("embeddings"),
        "/v1/messages": AnthropicProtocol(),
        "/v1/responses": ResponsesProtocol(responses, metrics.responses_unstored),
    }


class ProxyApp:
    """The hot path. One instance per loaded config; swapped whole on reload."""

    def __init__(
        self,
        config: GatewayConfig,
        providers: dict[str, Provider],
        metrics: GatewayMetrics,
        accountant: Accountant,
        attempts: AttemptRunner,
        admitter: Admitter,
        budgets: Budgets,
        responses: ResponseStore,
        tracing: Tracing,
        faults: FaultTable | None = None,
        lane: HeavyLane | None = None,
    ) -> None:
        self.config = config
        self._lane = lane
        self._tracing = tracing
        self._protocols = client_protocols(responses, metrics)
        self._responses = responses
        self._faults = faults
        self._providers = providers
        self.keys = KeyStore(config, faults.minted_keys if faults is not None else None)
        self.in_flight = 0
        self._metrics = metrics
        self._account = accountant
        self._attempts = attempts
        self._admit = admitter
        self._budgets = budgets
        self._max_body = config.server.max_body_bytes
        self._max_depth = config.server.max_json_depth
        self._created = int(time.time())

    def handles(self, scope: Scope) -> bool:
        path = scope["path"]
        return (
            path in self._protocols
            or path in ("/v1/models", COUNT_TOKENS)
            or path.startswith(STORED_RESPONSES)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        headers = dict(scope["headers"])
        if self._lane is not None and self._lane.takes(scope, headers):
            try:
                if await self._lane.forward(scope, receive, send, None, "body"):
                    return  # answered by the lane, which keeps the row
            except SpilloverError as exc:
                # The body failed on its way (past the limit, the lane gone with it in hand):
                # answered here, with a row, where reading it fails.
                receive = failed_read(exc)
        # Ours, always: a client's id could repeat another tenant's (in the ledger, the logs
        # and upstream); theirs is kept beside it, OpenAI's way (`x-client-request-id`).
        request_id = new_id()
        if path == "/v1/models":
            await model_list(
                self.config, self.keys, self._admit, self._account, self._created, scope,
                request_id, send,
            )  # fmt: skip
            return
        if path == COUNT_TOKENS:
            await count_tokens(
                self.config, self.keys, self._admit, self._account, scope, receive,
                request_id, send,
            )  # fmt: skip
            return
        if path.startswith(STORED_RESPONSES):
            await stored_response(
                self.keys, self._responses, self._admit, self._account, scope, request_id, send
            )
            return
        protocol = self._protocols[path]
        ctx = RequestContext(
            request_id=request_id, endpoint=protocol.endpoint, ingress=protocol.ingress
        )
        ctx.client_request_id = _client_request_id(
            headers.get(b"x-client-request-id") or headers.get(b"x-request-id")
        )
        logged_as = logs.request_id.set(request_id)  # on every log line of this request
        span = self._tracing.request(protocol.endpoint, headers)
        if span is not None:
            ctx.trace_id = span.trace_id
            ctx.traced = span.recording
        traced_as = logs.trace_id.set(ctx.trace_id)
        self._metrics.in_flight.inc()
        self.in_flight += 1
        accounted = False
        cost: int | None = None

        async def send_accounted(message: Message) -> None:
            # The row is kept before the answer's last byte leaves: once a client has its
            # whole answer, a killed gateway can no longer lose what it was billed.
            nonlocal accounted, cost
            if (
                not accounted
                and not ctx.handed_off
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                accounted = True
                cost = self._account.record(ctx)
            await send(message)

        try:
            await self._serve(ctx, protocol, scope, headers, receive, send_accounted)
        finally:
            self.in_flight -= 1
            self._metrics.in_flight.dec()
            for release in ctx.releases:
                release()
            if ctx.admission is not None:
                await self._admit.release(ctx, ctx.admission)
            if not accounted and not ctx.handed_off:
                cost = self._account.record(ctx)
            if ctx.reservation is not None:
                await self._budgets.settle(ctx.reservation, cost)
            if span is not None:
                self._tracing.request_done(span, ctx, cost)
            logs.trace_id.reset(traced_as)
            logs.request_id.reset(logged_as)

    async def _serve(
        self,
        ctx: RequestContext,
        protocol: ClientProtocol,
        scope: Scope,
        headers: dict[bytes, bytes],
        receive: Receive,
        send: Send,
    ) -> None:
        try:
            route, targets = await self._prepare(ctx, protocol, scope, headers, receive)
            served = await self._attempts.run(ctx, route, targets)
        except HeavyRequest as heavy:
            await self._hand_off(ctx, protocol, scope, receive, send, heavy.body)
            return
        except SpilloverError as exc:
            await self._reply_error(ctx, protocol, exc, send)
            return
        except Exception as exc:  # a bug of ours: still an answer in the client's protocol
            log.error(
                "request %s failed inside the gateway: %s\n%s",
                ctx.request_id,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            failure = InternalError("the gateway failed on this request")
            await self._reply_error(ctx, protocol, failure, send)
            return
        ctx.served_by = served.target
        self._dropped(ctx, served.dropped)
        if served.response is not None:
            ctx.usage = served.response.usage
            if ctx.traced:
                ctx.finish_reasons = finish.from_body(
                    served.response.protocol, served.response.body
                )
            try:
                body_bytes = await protocol.answer(ctx, served.response)
            except UpstreamFailure as exc:  # an answer in a shape we cannot read back
                await self._reply_error(ctx, protocol, exc, send)
                return
            ctx.status = 200
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        JSON,
                        (b"content-length", str(len(body_bytes)).encode()),
                        *self._answer_headers(ctx),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body_bytes})
            await self._attempts.settle(ctx, route, served)
            return
        await self._stream(ctx, protocol, route, served, receive, send)

    async def _hand_off(
        self,
        ctx: RequestContext,
        protocol: ClientProtocol,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
    ) -> None:
        """A request found heavy once read: the lane serves it whole, and keeps its row."""
        assert self._lane is not None
        ctx.handed_off = True
        try:
            await self._lane.forward(scope, receive, send, body, "history")
        except SpilloverError as exc:
            ctx.handed_off = False
            await self._reply_error(ctx, protocol, exc, send)

    async def _prepare(
        self,
        ctx: RequestContext,
        protocol: ClientProtocol,
        scope: Scope,
        headers: dict[bytes, bytes],
        receive: Receive,
    ) -> tuple[Route, list[Target]]:
        """api → admit → shape → decide: everything before the first attempt, filling `ctx`;
        the route and its candidate targets, or a SpilloverError to answer with."""
        if scope["method"] != "POST":
            raise MethodNotAllowed(f"{scope['path']} accepts POST only", allow="POST")
        ctx.principal = self.keys.authenticate(protocol.credentials(headers))
        raw = await read_body(headers, receive, self._max_body)
        body = checked_body(raw, protocol.validate, self._max_depth)
        ctx.route_name, route = route_for(self.config, ctx.principal, body["model"])
        ctx.route = route
        try:
            await protocol.read(ctx, body, headers)
        except HeavyRequest as heavy:
            heavy.body = raw
            raise
        if not self._account.accepting():
            raise LedgerUnavailable(
                "the gateway cannot record requests right now (its ledger is full)",
                retry_after=5.0,
            )
        if self._faults is not None and (down := self._faults.redis_down()) is not None:
            down.fired += 1  # admitted and budgeted without Redis: a drill's row
            ctx.faults.append(f"{down.id}:redis_down")
            self._metrics.child(self._metrics.faults_injected, "redis_down", "redis").inc()
        ctx.admission = await self._admit.admit(ctx, route)
        ctx.reservation = await self._budgets.reserve(ctx, route)
        if ctx.endpoint == "chat":
            self._shape(ctx, route)
        ctx.deadline = _deadline(
            ctx, route.latency_budget_ms, headers.get(b"x-spillover-budget-ms")
        )
        ctx.priority = _priority(ctx.principal.priority, headers.get(b"x-spillover-priority"))
        drill = headers.get(b"x-spillover-drill")
        ctx.drill = _printable(drill[:64]) if drill else None
        targets, skipped = candidates(route, ctx.upstream_endpoint, self._providers)
        ctx.attempts.extend(skipped)
        if not targets:
            raise InvalidRequest(
                f"the model '{ctx.route_name}' does not serve {scope['path']}", param="model"
            )
        return route, targets

    def _shape(self, ctx: RequestContext, route: Route) -> None:
        """The shape stage: a byte-stable prefix, and the hints for the provider's cache."""
        shaped = shape(ctx.body, route.prompt_cache)
        ctx.body = shaped.body
        ctx.cache_hint = cache_hint(shaped, route.prompt_cache, _tenant(ctx))
        m = self._metrics
        for change in shaped.changes:
            m.child(m.shape_changes, ctx.route_name, change).inc()

    async def _stream(
        self,
        ctx: RequestContext,
        protocol: ClientProtocol,
        route: Route,
        served: Served,
        receive: Receive,
        send: Send,
    ) -> None:
        stream = served.stream
        events = served.events
        assert stream is not None and events is not None
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_SSE_HEADERS, *self._answer_headers(ctx)],
            }
        )
        client = protocol.stream(ctx, stream.protocol, RawClientStream(send, receive))
        await client.write(served.first_event)
        ctx.bytes_sent = True
        ctx.ttft_s = ctx.elapsed()
        ctx.status = 200
        await self._attempts.settle(ctx, route, served)
        try:
            ctx.usage = await relay(ctx, route, served, self._attempts, self._metrics, client)
        finally:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        if ctx.status == 200 and ctx.ttft_s is not None and not ctx.resumed:
            self._attempts.stream_finished(
                served.target, ctx.ttft_s, ctx.elapsed(), ctx.usage.completion_tokens
            )

    async def _reply_error(
        self, ctx: RequestContext, protocol: ClientProtocol, exc: SpilloverError, send: Send
    ) -> None:
        ctx.error_class = (
            exc.error_class if isinstance(exc, UpstreamFailure) else exc.code or type(exc).__name__
        )
        if isinstance(exc, BadRequest):
            # The upstream judged the request invalid: the client's fault, said as such.
            exc = InvalidRequest(exc.message, param=exc.param)
        elif isinstance(exc, ContextTooLong):
            # No target could hold the prompt: the client's to shorten, as OpenAI says it.
            exc = InvalidRequest(exc.message, param="messages", code=exc.code)
        status, body, headers = protocol.error(exc, ctx.request_id)
        ctx.status = status
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    JSON,
                    (b"content-length", str(len(body)).encode()),
                    *self._trace_headers(ctx),
                    *headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _dropped(self, ctx: RequestContext, dropped: list[str]) -> None:
        """A translated target served without what it could not carry: counted, and told
        in `x-spillover-dropped`."""
        ctx.dropped = dropped
        m = self._metrics
        for item in dropped:
            m.child(m.translation_dropped, ctx.route_name, ctx.ingress, _what(item)).inc()

    def _answer_headers(self, ctx: RequestContext) -> list[tuple[bytes, bytes]]:
        """A served answer's headers: the trace, and Anthropic's `request-id` for its SDKs
        (an error answer carries its protocol's own)."""
        headers = self._trace_headers(ctx)
        if ctx.ingress == "anthropic":
            headers.append((b"request-id", ctx.request_id.encode()))
        return headers

    def _trace_headers(self, ctx: RequestContext) -> list[tuple[bytes, bytes]]:
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
            headers.append((b"x-spillover-dropped", _printable(shown.encode())[:1024].encode()))
        return headers


def _tenant(ctx: RequestContext) -> str:
    principal = ctx.principal
    return principal.tenant if principal else "-"


def _deadline(ctx: RequestContext, budget_ms: int | None, header: bytes | None) -> float | None:
    """The route's latency budget, tightened (never loosened) by `x-spillover-budget-ms`."""
    if header is not None:
        if not header.isdigit() or len(header) > 9 or int(header) <= 0:
            raise InvalidRequest(
                "x-spillover-budget-ms must be a positive integer of at most 9 digits",
                param="x-spillover-budget-ms",
            )
        asked = int(header)
        budget_ms = asked if budget_ms is None else min(budget_ms, asked)
    return None if budget_ms is None else ctx.started + budget_ms / 1000


_PRIORITIES: dict[bytes, Priority] = {
    b"critical": "critical",
    b"standard": "standard",
    b"sheddable": "sheddable",
}


def _priority(granted: Priority, header: bytes | None) -> Priority:
    """The key's priority, lowered (never raised) by `x-spillover-priority`."""
    if header is None:
        return granted
    asked = _PRIORITIES.get(header.strip().lower())
    if asked is None:
        raise InvalidRequest(
            "x-spillover-priority must be critical, standard or sheddable",
            param="x-spillover-priority",
        )
    return asked if PRIORITY_RANK[asked] > PRIORITY_RANK[granted] else granted


def _printable(raw: bytes) -> str:
    """A client's header value made safe for logs and rows: printable ASCII only."""
    return "".join(c if c.isprintable() else "?" for c in raw.decode("ascii", "replace"))


def _client_request_id(given: bytes | None) -> str | None:
    """The client's own id for its request, when it is sane: printable ASCII without spaces
    (a log line's `key=value` words stay unforgeable), at most 128 characters."""
    if given and len(given) <= 128 and given.isascii():
        text = given.decode()
        if text.isprintable() and " " not in text:
            return text
    return None


def _what(item: str) -> str:
    """A bounded label for a dropped item: a top-level field, a content block or a tool."""
    if item.startswith("tools["):
        return "tool"
    return "block" if "(" in item else "field"
