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
    AuthenticationFailed,
    ClientError,
    GatewayRateLimited,
    PermissionDenied,
    SpilloverError,
)
from gateway.http.body import read_bounded
from gateway.http.console.session import SignInThrottle
from gateway.keys import KeyStore

ADMIN_MAX_BODY_BYTES = 1024 * 1024
# What a viewer key may read of the admin API (everything else takes an admin key).
VIEWER_READS = ("/admin/keys", "/admin/teams", "/admin/audit")


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


async def guard_admin(
    scope: Scope, receive: Receive, send: Send, keys: KeyStore, throttle: SignInThrottle
) -> Receive | None:
    """Authenticate an admin request, then read its body within the admin limit; None when
    it has been answered already (401, 403, 413, 429 after too many bad keys from one
    address). Else a `receive` that replays the body."""
    client = scope["client"][0] if scope.get("client") else "?"
    try:
        wait = throttle.retry_after(client)
        if wait:
            raise GatewayRateLimited(
                "too many requests with a bad key from this address", retry_after=wait
            )
        try:
            principal = keys.authenticate(header(scope, b"authorization"))
        except AuthenticationFailed:
            throttle.failed(client)
            raise
        if not principal.admin and not _viewer_read(scope, principal.viewer):
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


def _viewer_read(scope: Scope, viewer: bool) -> bool:
    path: str = scope["path"]
    return (
        viewer
        and scope["method"] == "GET"
        and any(path == p or path.startswith(p + "/") for p in VIEWER_READS)
    )
