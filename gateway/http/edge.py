"""The edge: what every request meets before an app sees it, and the one error shape.

Errors anywhere in the gateway are answered in the OpenAI error format (`{"error": {...}}`),
with the right status: unknown paths 404, wrong methods 405 with `Allow`. Admin requests
are authenticated before their body is read, and no admin body may exceed
`ADMIN_MAX_BODY_BYTES`: an unauthenticated client cannot make the gateway read or parse
anything."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from gateway.error_wire import error_body, protocol_headers
from gateway.errors import (
    ClientError,
    PermissionDenied,
    SpilloverError,
)
from gateway.http.body import read_bounded
from gateway.keys import KeyStore

ADMIN_MAX_BODY_BYTES = 1024 * 1024


async def send_whole(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    content_type: bytes = b"application/json",
    head: bool = False,
) -> None:
    """A whole answer, its length told; `head`: the headers only (a HEAD request)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_error(
    send: Send, exc: SpilloverError, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send_whole(send, exc.status, error_body(exc), [*(headers or []), *protocol_headers(exc)])


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def guard_admin(scope: Scope, receive: Receive, send: Send, keys: KeyStore) -> Receive | None:
    """Authenticate an admin request, then read its body within the admin limit; None when
    it has been answered already (401, 403, 413). Else a `receive` that replays the body."""
    try:
        principal = keys.authenticate(header(scope, b"authorization"))
        if not principal.admin:
            raise PermissionDenied("this key is not an admin key")
        body = await read_bounded(dict(scope["headers"]), receive, ADMIN_MAX_BODY_BYTES)
    except ClientError as exc:
        await send_error(send, exc)
        return None
    if body is None:
        return None
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
