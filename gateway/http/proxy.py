"""The OpenAI-wire HTTP surface (`/v1/*`) as plain ASGI: read the body within its limit,
authenticate, parse once, validate, then decide → attempt → account, and answer with the
upstream's bytes or pass its stream through event by event."""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from gateway.drill.faults import FaultTable
from gateway.errors import (
    BadRequest,
    ClientError,
    InternalError,
    InvalidRequest,
    LedgerUnavailable,
    MethodNotAllowed,
    ModelNotFound,
    PayloadTooLarge,
    SpilloverError,
    UpstreamFailure,
)
from gateway.http.auth import KeyStore
from gateway.http.edge import error_body, send_error
from gateway.http.validate import json_depth_within, validate
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
from gateway.providers.base import Provider
from policies.pool import PRIORITY_RANK, Priority
from policies.schema import Endpoint, GatewayConfig, Route, Target

log = logging.getLogger("spillover")


JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_ENDPOINTS: dict[str, Endpoint] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}
_READ_SLACK = 64 * 1024


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
        faults: FaultTable | None = None,
    ) -> None:
        self.config = config
        self._faults = faults
        self._providers = providers
        self.keys = KeyStore(config)
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
        return path in _ENDPOINTS or path == "/v1/models"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        headers = dict(scope["headers"])
        request_id = _request_id(headers.get(b"x-request-id"))
        if path == "/v1/models":
            await self._models(scope, headers, request_id, send)
            return
        ctx = RequestContext(request_id=request_id, endpoint=_ENDPOINTS[path])
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
                and message["type"] == "http.response.body"
                and not message.get("more_body", False)
            ):
                accounted = True
                cost = self._account.record(ctx)
            await send(message)

        try:
            await self._serve(ctx, scope, headers, receive, send_accounted)
        finally:
            self.in_flight -= 1
            self._metrics.in_flight.dec()
            if ctx.admission is not None:
                await self._admit.release(ctx, ctx.admission)
            if not accounted:
                cost = self._account.record(ctx)
            if ctx.reservation is not None:
                await self._budgets.settle(ctx.reservation, cost)

    async def _serve(
        self,
        ctx: RequestContext,
        scope: Scope,
        headers: dict[bytes, bytes],
        receive: Receive,
        send: Send,
    ) -> None:
        try:
            route, targets = await self._prepare(ctx, scope, headers, receive)
            served = await self._attempts.run(ctx, route, targets)
        except SpilloverError as exc:
            await self._reply_error(ctx, exc, send)
            return
        except Exception as exc:  # a bug of ours: still an answer in the client's protocol
            log.error(
                "request %s failed inside the gateway: %s\n%s",
                ctx.request_id,
                type(exc).__name__,
                "".join(traceback.format_tb(exc.__traceback__)),
            )
            await self._reply_error(ctx, InternalError("the gateway failed on this request"), send)
            return
        ctx.served_by = served.target
        if served.response is not None:
            ctx.usage = served.response.usage
            ctx.status = 200
            body_bytes = served.response.body
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        JSON,
                        (b"content-length", str(len(body_bytes)).encode()),
                        *self._trace_headers(ctx),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body_bytes})
            await self._attempts.settle(ctx, route, served)
            return
        await self._stream(ctx, route, served, receive, send)

    async def _prepare(
        self, ctx: RequestContext, scope: Scope, headers: dict[bytes, bytes], receive: Receive
    ) -> tuple[Route, list[Target]]:
        """api → admit → shape → decide: everything before the first attempt, filling `ctx`;
        the route and its candidate targets, or a SpilloverError to answer with."""
        if scope["method"] != "POST":
            raise MethodNotAllowed(f"{scope['path']} accepts POST only", allow="POST")
        ctx.principal = self.keys.authenticate(headers.get(b"authorization"))
        raw = await self._read_body(headers, receive)
        body = _parse(raw)
        validate(ctx.endpoint, body)
        if not json_depth_within(body, self._max_depth):
            raise InvalidRequest(
                f"the request nests objects or arrays deeper than {self._max_depth} levels"
            )
        ctx.body = body
        ctx.route_name = body["model"]
        route = self.config.routes.get(ctx.route_name)
        if route is None or not ctx.principal.may_use(ctx.route_name):
            shown = ctx.route_name[:256]
            raise ModelNotFound(
                f"The model '{shown}' does not exist or you do not have access to it.",
                param="model",
            )
        ctx.route = route
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
        ctx.stream = bool(body.get("stream"))
        options = body.get("stream_options")
        ctx.client_wants_usage = bool(isinstance(options, dict) and options.get("include_usage"))
        targets, skipped = candidates(route, ctx.endpoint, self._providers)
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

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        limit = self._max_body
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise InvalidRequest("client disconnected while sending the body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _stream(
        self, ctx: RequestContext, route: Route, served: Served, receive: Receive, send: Send
    ) -> None:
        stream = served.stream
        events = served.events
        assert stream is not None and events is not None
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_SSE_HEADERS, *self._trace_headers(ctx)],
            }
        )
        await send({"type": "http.response.body", "body": served.first_event, "more_body": True})
        ctx.bytes_sent = True
        ctx.ttft_s = ctx.elapsed()
        ctx.status = 200
        await self._attempts.settle(ctx, route, served)
        try:
            client = AsgiClientStream(send, receive)
            ctx.usage = await relay(
                ctx, route, served, self._attempts, self._metrics, client, error_body
            )
        finally:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        if ctx.status == 200 and ctx.ttft_s is not None and not ctx.resumed:
            self._attempts.stream_finished(
                served.target, ctx.ttft_s, ctx.elapsed(), ctx.usage.completion_tokens
            )

    async def _reply_error(self, ctx: RequestContext, exc: SpilloverError, send: Send) -> None:
        if isinstance(exc, BadRequest):
            # The upstream judged the request invalid: the client's fault, said as such.
            exc = InvalidRequest(exc.message, param=exc.param)
        ctx.status = exc.status
        ctx.error_class = (
            exc.error_class if isinstance(exc, UpstreamFailure) else exc.code or type(exc).__name__
        )
        await send_error(send, exc, self._trace_headers(ctx))

    def _trace_headers(self, ctx: RequestContext) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"x-request-id", ctx.request_id.encode()),
            (b"x-spillover-attempts", str(len(ctx.attempts)).encode()),
        ]
        if ctx.route_name and ctx.route is not None:
            headers.append((b"x-spillover-route", ctx.route_name.encode()))
        if ctx.reservation is not None and ctx.reservation.warnings:
            warning = "; ".join(ctx.reservation.warnings)
            headers.append((b"x-spillover-budget-warning", warning.encode()))
        target = ctx.served_by
        if target is not None:
            headers.append((b"x-spillover-provider", target.provider.encode()))
            headers.append((b"x-spillover-model", target.model.encode()))
        return headers

    async def _models(
        self, scope: Scope, headers: dict[bytes, bytes], request_id: str, send: Send
    ) -> None:
        extra: list[tuple[bytes, bytes]] = []
        try:
            if scope["method"] != "GET":
                raise MethodNotAllowed("/v1/models accepts GET only", allow="GET")
            principal = self.keys.authenticate(headers.get(b"authorization"))
        except ClientError as exc:
            body = error_body(exc)
            status = exc.status
            if isinstance(exc, MethodNotAllowed):
                extra.append((b"allow", exc.allow.encode()))
        else:
            body = orjson.dumps(
                {
                    "object": "list",
                    "data": [
                        {
                            "id": name,
                            "object": "model",
                            "created": self._created,
                            "owned_by": "spillover",
                        }
                        for name in self.config.routes
                        if principal.may_use(name)
                    ],
                }
            )
            status = 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    JSON,
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", request_id.encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _tenant(ctx: RequestContext) -> str:
    principal = ctx.principal
    return (principal.team or principal.key_name) if principal else "-"


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


def _request_id(given: bytes | None) -> str:
    """The client's id when it is sane; else one of ours."""
    if given and len(given) <= 128 and given.isascii():
        text = given.decode()
        if text.isprintable():
            return text
    return new_id()


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("the request body is not valid UTF-8") from None
        raise InvalidRequest("the request body is not valid JSON") from None


class AsgiClientStream:
    """The relay's view of the client (`pipeline.relay.ClientStream`) over ASGI."""

    def __init__(self, send: Send, receive: Receive) -> None:
        self._send = send
        self._receive = receive

    async def write(self, chunk: bytes) -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def disconnected(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
