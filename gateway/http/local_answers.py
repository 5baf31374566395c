"""The `/v1` answers the gateway gives without an upstream: the model list (OpenAI's
`GET /v1/models`) and a prompt's token count (Anthropic's `POST /v1/messages/count_tokens`),
each authenticated and shaped in its client's protocol. A count is admitted through the
key's limits and leaves a ledger row at cost 0; the model list is neither."""

from __future__ import annotations

import asyncio

import orjson
from starlette.types import Receive, Scope, Send

from gateway.errors import ClientError, MethodNotAllowed
from gateway.http.auth import KeyStore, route_for
from gateway.http.body import checked_body, read_body
from gateway.http.edge import error_body
from gateway.http.ingress.anthropic_errors import anthropic_error
from gateway.http.ingress.anthropic_messages import AnthropicProtocol
from gateway.http.ingress.anthropic_validate import validate_messages
from gateway.pipeline.account import Accountant
from gateway.pipeline.admit import Admitter
from gateway.pipeline.context import RequestContext
from gateway.pipeline.tokens import prompt_tokens
from gateway.providers.translate.anthropic_openai import request_to_openai
from policies.schema import GatewayConfig

COUNT_TOKENS = "/v1/messages/count_tokens"
EXACT_UP_TO = 256 * 1024
_JSON = (b"content-type", b"application/json")


async def model_list(
    config: GatewayConfig, keys: KeyStore, created: int, scope: Scope, request_id: str, send: Send
) -> None:
    extra: list[tuple[bytes, bytes]] = []
    try:
        if scope["method"] != "GET":
            raise MethodNotAllowed("/v1/models accepts GET only", allow="GET")
        principal = keys.authenticate(dict(scope["headers"]).get(b"authorization"))
    except ClientError as exc:
        body = error_body(exc)
        status = exc.status
        if isinstance(exc, MethodNotAllowed):
            extra.append((b"allow", exc.allow.encode()))
    else:
        models = [
            {"id": name, "object": "model", "created": created, "owned_by": "spillover"}
            for name in config.routes
            if principal.may_use(name)
        ]
        body = orjson.dumps({"object": "list", "data": models})
        status = 200
    await _answer(send, status, body, [(b"x-request-id", request_id.encode()), *extra])


async def count_tokens(
    config: GatewayConfig,
    keys: KeyStore,
    limits: Admitter,
    account: Accountant,
    scope: Scope,
    receive: Receive,
    request_id: str,
    send: Send,
) -> None:
    """The gateway's own count — the one its limits and budgets use — of the prompt as the
    route's first target would read it; `x-spillover-token-count: estimated` says so. Admitted
    through the same limits as generation, and a ledger row at no cost: counting is work."""
    ctx = RequestContext(request_id=request_id, endpoint="count_tokens", ingress="anthropic")
    extra: list[tuple[bytes, bytes]]
    try:
        tokens = await _counted(ctx, config, keys, limits, scope, receive)
    except ClientError as exc:
        ctx.status, ctx.error_class = exc.status, exc.code or exc.error_type
        status, answer, extra = anthropic_error(exc, request_id)
    else:
        ctx.status = status = 200
        answer = orjson.dumps({"input_tokens": tokens})
        extra = [(b"request-id", request_id.encode()), (b"x-spillover-token-count", b"estimated")]
    finally:
        if ctx.admission is not None:
            await limits.release(ctx, ctx.admission)
    account.record(ctx)  # before the answer's last byte, as every row
    await _answer(send, status, answer, extra)


async def _counted(
    ctx: RequestContext,
    config: GatewayConfig,
    keys: KeyStore,
    limits: Admitter,
    scope: Scope,
    receive: Receive,
) -> int:
    headers = dict(scope["headers"])
    if scope["method"] != "POST":
        raise MethodNotAllowed(f"{COUNT_TOKENS} accepts POST only", allow="POST")
    ctx.principal = keys.authenticate(AnthropicProtocol().credentials(headers))
    raw = await read_body(headers, receive, config.server.max_body_bytes)
    body = checked_body(raw, _count_only, config.server.max_json_depth)
    ctx.route_name, route = route_for(config, ctx.principal, body["model"])
    ctx.route = route
    model = route.targets[0].model
    ctx.body = request_to_openai(body, model).body
    ctx.admission = await limits.admit(ctx, route)
    # Past EXACT_UP_TO bytes, the four-characters-a-token estimate; below, the exact count
    # runs beside the event loop, never holding up other tenants' requests.
    counted_as = model if len(raw) <= EXACT_UP_TO else ""
    return await asyncio.to_thread(prompt_tokens, ctx.body, counted_as)


def _count_only(body: object) -> None:
    validate_messages(body, count_only=True)


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})
