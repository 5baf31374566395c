"""Health and metrics as plain ASGI: what probes and scrapers call every few seconds,
answered without the admin app (FastAPI and its OpenAPI machinery, built at the first
`/admin` or `/openapi.json` request)."""

from __future__ import annotations

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import Scope, Send

from gateway.errors import AuthenticationFailed, MethodNotAllowed
from gateway.http.admin_port import AdminPort
from gateway.http.edge import send_error, send_whole

PATHS = frozenset({"/health/live", "/health/ready", "/metrics"})


async def answer(port: AdminPort, scope: Scope, send: Send) -> None:
    """One of `PATHS`, for GET (and HEAD: the same head, no body)."""
    method = scope["method"]
    if method not in ("GET", "HEAD"):
        await send_error(send, MethodNotAllowed(f"{scope['path']} accepts GET", allow="GET, HEAD"))
        return
    path = scope["path"]
    status = 200
    content_type = b"application/json"
    if path == "/health/live":
        body = b'{"status":"ok"}'
    elif path == "/health/ready":
        # Status only: route names and problems are for admins (`/admin/readiness`).
        _, problems = port.problems()
        status = 503 if problems else 200
        said: dict[str, str] = {"status": "not_ready" if problems else "ready"}
        if any(n.startswith("keyring:") for n in port.notices()):
            said["keyring"] = "stale"  # still ready: the last set loaded keeps serving
        body = orjson.dumps(said)
    else:
        # The lane is scraped by its workers only, over a socket no one else can open.
        needs_key = port.config().server.metrics_require_key and not port.lane
        if needs_key and not _may_scrape(port, scope):
            await send_error(
                send, AuthenticationFailed("/metrics takes an admin or viewer key (Bearer)")
            )
            return
        body = await port.exposition()
        content_type = CONTENT_TYPE_LATEST.encode()
    await send_whole(send, status, body, content_type=content_type, head=method == "HEAD")


def _may_scrape(port: AdminPort, scope: Scope) -> bool:
    authorization = dict(scope["headers"]).get(b"authorization")
    try:
        principal = port.authenticate(authorization)
    except AuthenticationFailed:
        return False
    return principal.admin or principal.viewer
