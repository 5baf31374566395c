"""The `/v1` answers the gateway gives without an upstream: the model list (OpenAI's
`GET /v1/models`) and a prompt's token count (Anthropic's `POST /v1/messages/count_tokens`),
each authenticated, admitted through the key's limits, kept in the ledger at cost 0 and
shaped in its client's protocol (`gateway.http.local_request`)."""

from __future__ import annotations

import asyncio

import orjson
from starlette.types import Receive, Scope, Send

from gateway.errors import MethodNotAllowed, SpilloverError
from gateway.http.auth import KeyStore, route_for
from gateway.http.body import checked_body, read_body
from gateway.http.edge import error_body, protocol_headers
from gateway.http.ingress.anthropic_errors import anthropic_error
from gateway.http.ingress.anthropic_messages import AnthropicProtocol
from gateway.http.ingress.anthropic_validate import validate_messages
from gateway.http.local_request import Answer, admitted, answer_locally
from gateway.pipeline.account import Accountant
from gateway.pipeline.admit import Admitter
from gateway.pipeline.context import RequestContext
from gateway.pipeline.tokens import prompt_tokens
from gateway.providers.translate.anthropic_openai import request_to_openai
from policies.schema import GatewayConfig

COUNT_TOKENS = "/v1/messages/count_tokens"
EXACT_UP_TO = 256 * 1024


async def model_list(
    config: GatewayConfig,
    keys: KeyStore,
    limits: Admitter,
    account: Accountant,
    created: int,
    scope: Scope,
    request_id: str,
    send: Send,
) -> None:
    ctx = RequestContext(request_id=request_id, endpoint="models")

    async def listed() -> Answer:
        if scope["method"] != "GET":
            raise MethodNotAllowed("/v1/models accepts GET only", allow="GET")
        ctx.principal = keys.authenticate(dict(scope["headers"]).get(b"authorization"))
        await admitted(ctx, limits)
        models = [
            {"id": name, "object": "model", "created": created, "owned_by": "spillover"}
            for name in config.routes
            if ctx.principal.may_use(name)
        ]
        body = orjson.dumps({"object": "list", "data": models})
        return 200, body, [(b"x-request-id", request_id.encode())]

    def refused(exc: SpilloverError) -> Answer:
        return exc.status, error_body(exc), [(b"x-request-id", request_id.encode()),
                                             *protocol_headers(exc)]  # fmt: skip

    await answer_locally(ctx, limits, account, listed, refused, send)


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
    route's first target would read it; `x-spillover-token-count: estimated` says so."""
    ctx = RequestContext(request_id=request_id, endpoint="count_tokens", ingress="anthropic")

    async def counted() -> Answer:
        tokens = await _counted(ctx, config, keys, limits, scope, receive)
        extra = [(b"request-id", request_id.encode()), (b"x-spillover-token-count", b"estimated")]
        return 200, orjson.dumps({"input_tokens": tokens}), extra

    def refused(exc: SpilloverError) -> Answer:
        return anthropic_error(exc, request_id)

    await answer_locally(ctx, limits, account, counted, refused, send)


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
