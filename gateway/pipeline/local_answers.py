"""The `/v1` answers the gateway gives without an upstream: the model list (OpenAI's
`GET /v1/models`) and a prompt's token count (Anthropic's `POST /v1/messages/count_tokens`),
each authenticated, admitted through the key's limits, kept in the ledger at cost 0 and
shaped in its client's protocol (`gateway.pipeline.local`)."""

from __future__ import annotations

import asyncio

import orjson

from gateway.error_wire import anthropic_error, error_body, protocol_headers
from gateway.errors import MethodNotAllowed, SpilloverError
from gateway.keys import KeyStore, route_for
from gateway.pipeline.account import Accountant
from gateway.pipeline.admit import Admitter
from gateway.pipeline.context import Asked, RequestContext
from gateway.pipeline.ingress.anthropic_messages import AnthropicProtocol
from gateway.pipeline.ingress.anthropic_validate import validate_messages
from gateway.pipeline.ingress.body import checked_body, read_whole
from gateway.pipeline.local import Answer, admitted, answer_locally
from gateway.pipeline.ports import Inbound, Reply
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
    inbound: Inbound,
    request_id: str,
    reply: Reply,
) -> None:
    ctx = RequestContext(request_id=request_id, endpoint="models")

    async def listed() -> Answer:
        if inbound.method != "GET":
            raise MethodNotAllowed("/v1/models accepts GET only", allow="GET")
        ctx.principal = keys.authenticate(inbound.headers.get(b"authorization"))
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

    await answer_locally(ctx, limits, account, listed, refused, reply)


async def count_tokens(
    config: GatewayConfig,
    keys: KeyStore,
    limits: Admitter,
    account: Accountant,
    inbound: Inbound,
    request_id: str,
    reply: Reply,
) -> None:
    """The gateway's own count — the one its limits and budgets use — of the prompt as the
    route's first target would read it; `x-spillover-token-count: estimated` says so."""
    ctx = RequestContext(request_id=request_id, endpoint="count_tokens", ingress="anthropic")

    async def counted() -> Answer:
        tokens = await _counted(ctx, config, keys, limits, inbound)
        extra = [(b"request-id", request_id.encode()), (b"x-spillover-token-count", b"estimated")]
        return 200, orjson.dumps({"input_tokens": tokens}), extra

    def refused(exc: SpilloverError) -> Answer:
        return anthropic_error(exc, request_id)

    await answer_locally(ctx, limits, account, counted, refused, reply)


async def _counted(
    ctx: RequestContext,
    config: GatewayConfig,
    keys: KeyStore,
    limits: Admitter,
    inbound: Inbound,
) -> int:
    if inbound.method != "POST":
        raise MethodNotAllowed(f"{COUNT_TOKENS} accepts POST only", allow="POST")
    ctx.principal = keys.authenticate(AnthropicProtocol().credentials(inbound.headers))
    raw = await read_whole(inbound, config.server.max_body_bytes)
    body = checked_body(raw, _count_only, config.server.max_json_depth)
    ctx.route_name, route = route_for(config, ctx.principal, body["model"])
    ctx.route = route
    model = route.targets[0].model
    ctx.take(Asked(body=request_to_openai(body, model).body))
    ctx.held_limits = await limits.admit(ctx, route)
    # Past EXACT_UP_TO bytes, the four-characters-a-token estimate; below, the exact count
    # runs beside the event loop, never holding up other tenants' requests.
    counted_as = model if len(raw) <= EXACT_UP_TO else ""
    return await asyncio.to_thread(prompt_tokens, ctx.body, counted_as)


def _count_only(body: object) -> None:
    validate_messages(body, count_only=True)
