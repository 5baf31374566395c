"""`GET` / `DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`: a caller's
stored responses, answered from the gateway's own store. Another owner's id is a 404, the
same answer as an id that never existed. Each is admitted through the key's limits and
kept in the ledger at cost 0 (`gateway.pipeline.local`)."""

from __future__ import annotations

from urllib.parse import parse_qs

import orjson

from gateway.error_wire import error_body, protocol_headers
from gateway.errors import (
    ClientError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    SpilloverError,
)
from gateway.keys import KeyStore
from gateway.pipeline.account import Accountant
from gateway.pipeline.admit import Admitter
from gateway.pipeline.context import RequestContext
from gateway.pipeline.local import Answer, admitted, answer_locally
from gateway.pipeline.ports import Inbound, Reply
from gateway.state.responses import ResponseStore

PREFIX = "/v1/responses/"
MAX_ID = 64


async def stored_response(
    keys: KeyStore,
    store: ResponseStore,
    limits: Admitter,
    account: Accountant,
    inbound: Inbound,
    request_id: str,
    reply: Reply,
) -> None:
    ctx = RequestContext(request_id=request_id, endpoint="stored_response", ingress="responses")
    headers = [(b"x-request-id", request_id.encode())]

    async def answered() -> Answer:
        return 200, await _answer(ctx, keys, store, limits, inbound), headers

    def refused(exc: SpilloverError) -> Answer:
        return exc.status, error_body(exc), [*headers, *protocol_headers(exc)]

    await answer_locally(ctx, limits, account, answered, refused, reply)


async def _answer(
    ctx: RequestContext, keys: KeyStore, store: ResponseStore, limits: Admitter, inbound: Inbound
) -> bytes:
    principal = ctx.principal = keys.authenticate(inbound.headers.get(b"authorization"))
    await admitted(ctx, limits)
    rest = inbound.path[len(PREFIX) :]
    response_id, _, tail = rest.partition("/")
    if not response_id or len(response_id) > MAX_ID or not response_id.isprintable():
        raise _missing(response_id[:MAX_ID])
    method = inbound.method
    if tail == "input_items":
        if method != "GET":
            raise MethodNotAllowed("input_items accepts GET only", allow="GET")
        return await _input_items(store, response_id, principal.tenant, inbound.query)
    if tail:
        raise NotFound(f"no route for {inbound.path[:128]}")
    if method == "GET":
        found = await store.get(response_id, principal.tenant)
        if found is None:
            raise _missing(response_id)
        return orjson.dumps(found.response)
    if method == "DELETE":
        if not await store.delete(response_id, principal.tenant):
            raise _missing(response_id)
        return orjson.dumps({"id": response_id, "object": "response", "deleted": True})
    raise MethodNotAllowed(f"{PREFIX}{{id}} accepts GET and DELETE", allow="GET, DELETE")


async def _input_items(
    store: ResponseStore, response_id: str, owner: str, raw_query: bytes
) -> bytes:
    query = parse_qs(raw_query.decode("latin-1"))
    order = query.get("order", ["desc"])[0]
    limit_text = query.get("limit", ["20"])[0]
    # isdigit() alone admits '²' and other digits int() refuses
    limited = limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text) <= 100
    if order not in ("asc", "desc") or not limited:
        raise InvalidRequest("order must be asc or desc and limit from 1 to 100", param="limit")
    found = await store.get(response_id, owner)
    if found is None:
        raise _missing(response_id)
    items = found.input_items if order == "asc" else list(reversed(found.input_items))
    after = query.get("after", [None])[0]
    if after is not None:
        ids = [item.get("id") for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[: int(limit_text)]
    return orjson.dumps(
        {
            "object": "list",
            "data": page,
            "first_id": page[0].get("id") if page else None,
            "last_id": page[-1].get("id") if page else None,
            "has_more": len(items) > len(page),
        }
    )


def _missing(response_id: str) -> ClientError:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")
