"""The console's routes (Starlette), mounted at `/ui` by the gateway. Pages render on the
server and work without JavaScript; htmx swaps in the live parts and uPlot draws the charts.
Every page needs a session; every POST needs the session's CSRF token and, when the browser
sends one, a same-origin `Origin`; actions need an admin key's session. Every answer carries
the security headers (a strict CSP: no inline script or style)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import ClientError
from gateway.http.console import keys_page, pages
from gateway.http.console.drills import ConsoleDrills
from gateway.http.console.port import ConsolePort
from gateway.http.console.session import Sessions
from gateway.http.console.site import HERE, Console, Denied, message

_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def console_app(port: ConsolePort, sessions: Sessions, drills: ConsoleDrills) -> ASGIApp:
    console = Console(port, sessions, drills)
    routes = [
        Route("/ui", pages.home),
        Route("/ui/", pages.home),
        Route("/ui/login", pages.login_form, methods=["GET"]),
        Route("/ui/login", pages.login, methods=["POST"]),
        Route("/ui/logout", pages.logout, methods=["POST"]),
        Route("/ui/overview", pages.overview),
        Route("/ui/overview/live", pages.overview_live),
        Route("/ui/series", pages.series),
        Route("/ui/targets", pages.targets),
        Route("/ui/targets/live", pages.targets_live),
        Route("/ui/targets/reset", pages.reset_targets, methods=["POST"]),
        Route("/ui/pool", pages.pool),
        Route("/ui/pool/live", pages.pool_live),
        Route("/ui/spend", pages.spend),
        Route("/ui/spend.csv", pages.spend_csv),
        Route("/ui/cache/purge", pages.purge_cache, methods=["POST"]),
        Route("/ui/limits", pages.limits),
        Route("/ui/drills", pages.drills_page),
        Route("/ui/drills/run", pages.run_drill, methods=["POST"]),
        Route("/ui/drills/{drill_id}", pages.drill),
        Route("/ui/drills/{drill_id}/live", pages.drill_live),
        Route("/ui/keys", keys_page.keys),
        Route("/ui/keys/create", keys_page.create, methods=["POST"]),
        Route("/ui/keys/{name}/rotate", keys_page.rotate, methods=["POST"]),
        Route("/ui/keys/{name}/revoke", keys_page.revoke, methods=["POST"]),
        Route("/ui/config", pages.config),
        Route("/ui/config/reload", pages.reload, methods=["POST"]),
        Mount("/ui/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={Denied: _denied, ClientError: _client_error})
    app.state.console = console
    return _with_headers(app)


async def _denied(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Denied)
    if exc.status == 401 and request.method == "GET":
        if request.headers.get("hx-request"):
            return Response(status_code=204, headers={"hx-redirect": "/ui/login"})
        return RedirectResponse("/ui/login", 303)
    return HTMLResponse(message(str(exc)), exc.status)


async def _client_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(max(1, round(retry_after)))
    return HTMLResponse(message(exc.message), exc.status, headers)


def _with_headers(app: Starlette) -> ASGIApp:
    """Security headers on every console answer (static files may be cached)."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        static = scope["path"].startswith("/ui/static/")

        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.decode().lower() not in _HEADERS
                ]
                for name, value in _HEADERS.items():
                    if static and name == "cache-control":
                        value = "public, max-age=3600"
                    headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_with)

    return asgi
