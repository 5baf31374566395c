"""The `/v1` answers the gateway gives without an upstream: the model list (OpenAI's
`GET /v1/models`) and a prompt's token count (Anthropic's `POST /v1/messages/count_tokens`),
each authenticated and shaped in its client's protocol. Neither is billed: no ledger row."""

from __future__ import annotations

import orjson
from starlette.types import Receive, Scope, Send

from gateway.errors import ClientError, MethodNotAllowed
from gateway.http.auth import KeyStore, route_for
from gateway.http.body import checked_body, read_body
from gateway.http.edge import error_body
from gateway.http.ingress.anthropic_errors import anthropic_error
from gateway.http.ingress.anthropic_messages import AnthropicProtocol
from gateway.http.ingress.anthropic_validate import validate_messages
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
    scope: Scope,
    receive: Receive,
    request_id: str,
    send: Send,
) -> None:
    """The gateway's own count — the one its limits and budgets use — of the prompt as the
    route's first target would read it; `x-spillover-token-count: estimated` says so."""
    headers = dict(scope["headers"])
    try:
        if scope["method"] != "POST":
            raise MethodNotAllowed(f"{COUNT_TOKENS} accepts POST only", allow="POST")
        principal = keys.authenticate(AnthropicProtocol().credentials(headers))
        raw = await read_body(headers, receive, config.server.max_body_bytes)
        body = checked_body(raw, _count_only, config.server.max_json_depth)
        _, route = route_for(config, principal, body["model"])
        model = route.targets[0].model
        # Past EXACT_UP_TO bytes the four-characters-a-token estimate: the work a count costs
        # is bounded, since counting calls no upstream and is not rate limited.
        counted_as = model if len(raw) <= EXACT_UP_TO else ""
        tokens = prompt_tokens(request_to_openai(body, model).body, counted_as)
    except ClientError as exc:
        status, answer, extra = anthropic_error(exc, request_id)
        await _answer(send, status, answer, extra)
        return
    estimated = (b"x-spillover-token-count", b"estimated")
    answer = orjson.dumps({"input_tokens": tokens})
    await _answer(send, 200, answer, [(b"request-id", request_id.encode()), estimated])


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
