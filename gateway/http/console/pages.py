"""The console's request handlers, one per page, fragment or action (routes: app.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from gateway.accounting.report_render import as_csv
from gateway.accounting.reports import DIMENSIONS
from gateway.errors import AuthenticationFailed, GatewayRateLimited, InvalidRequest, NotFound
from gateway.http.console import views
from gateway.http.console.config_view import masked_yaml
from gateway.http.console.drills import DrillRecord
from gateway.http.console.sampler import SERIES
from gateway.http.console.session import COOKIE
from gateway.http.console.site import Console, Denied, authenticate

log = logging.getLogger("spillover.console")

_CHARTS = {
    "overview": [
        ("Requests per second", ["rps"]),
        ("Error and fallback share", ["error_rate", "fallback_share"]),
        ("Latency (ms)", ["latency_p50_ms", "latency_p99_ms"]),
        ("Time to first token (ms)", ["ttft_p50_ms", "ttft_p99_ms"]),
        ("Spend rate ($/h)", ["spend_usd_per_h"]),
    ],
    "pool": [
        ("Admission (per second)", ["pool_admitted_ps", "pool_shed_ps"]),
        ("Waiting at the gateway", ["pool_queue"]),
    ],
}


def _console(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


# -- signing in ------------------------------------------------------------------------------


async def home(request: Request) -> Response:
    return RedirectResponse("/ui/overview", 303)


async def login_form(request: Request) -> Response:
    return _console(request).render("login.html", request, None, error="")


async def login(request: Request) -> Response:
    console = _console(request)
    wait = console.throttle.retry_after(_client(request))
    if wait > 0:
        raise GatewayRateLimited(
            f"Too many failed sign-ins: try again in {wait:.0f} s.", retry_after=wait
        )
    fields = await console.form(request, None)
    try:
        key_digest, principal = authenticate(console, fields.get("key", ""))
        if principal.console_role is None:
            raise AuthenticationFailed("this key may not use the console")
    except AuthenticationFailed as exc:
        console.throttle.failed(_client(request))
        log.warning("console: failed sign-in from %s", _client(request))
        # The form again with the reason; 200, as a page (a 401 would ask for HTTP auth).
        return console.render("login.html", request, None, error=exc.message)
    cookie = console.sessions.issue(key_digest, principal.key_name, principal.console_role)
    log.info("console: %s signed in (%s)", principal.key_name, principal.console_role)
    response = RedirectResponse("/ui/overview", 303)
    response.set_cookie(
        COOKIE,
        cookie,
        max_age=int(console.sessions.ttl_s),
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=_secure(console, request),
    )
    return response


def _secure(console: Console, request: Request) -> bool:
    forced = console.port.config().console.secure_cookie
    return request.url.scheme == "https" if forced is None else forced


async def logout(request: Request) -> Response:
    console = _console(request)
    session, _ = console.who(request)
    await console.form(request, session)
    await console.sessions.revoke(session)
    response = RedirectResponse("/ui/login", 303)
    response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
    return response


# -- overview --------------------------------------------------------------------------------


async def overview(request: Request) -> Response:
    return await _live(request, "overview", _overview_data, charts=_CHARTS["overview"])


async def overview_live(request: Request) -> Response:
    return await _live(request, "overview", _overview_data, fragment=True)


async def _overview_data(console: Console) -> dict[str, object]:
    sampler = console.port.sampler
    return {
        "latest": sampler.latest if sampler else {},
        "incidents": console.port.incidents.recent(15),
        "problems": console.port.problems()[1],
        "budgets": [u for u in await views.limits(console.port, recent=False) if u.budgets],
        "spend_today": await console.cached("spend_today", 15.0, views.spend_today),
    }


async def _live(
    request: Request,
    page: str,
    load: Callable[[Console], Awaitable[dict[str, object]]],
    fragment: bool = False,
    **extra: object,
) -> Response:
    """A page with a live part, or (for htmx's polling) that part alone: `page.html`
    includes `_page_live.html`, and both render the same data."""
    console = _console(request)
    who = console.who(request)
    data = await load(console)
    if fragment:
        return console.render(f"_{page}_live.html", request, who, **data)
    return console.render(f"{page}.html", request, who, page=page, **data, **extra)


async def series(request: Request) -> Response:
    console = _console(request)
    console.who(request)
    sampler = console.port.sampler
    names = [n for n in request.query_params.get("names", "").split(",") if n in SERIES]
    data = sampler.data(names) if sampler else [[] for _ in range(len(names) + 1)]
    return JSONResponse({"names": names, "data": data})


# -- routes and targets ------------------------------------------------------------------------


async def targets(request: Request) -> Response:
    return await _live(request, "targets", _routes)


async def targets_live(request: Request) -> Response:
    return await _live(request, "targets", _routes, fragment=True)


async def _routes(console: Console) -> dict[str, object]:
    return {"routes": await views.routes(console.port, time.time())}


async def reset_targets(request: Request) -> Response:
    console = _console(request)
    session, principal = console.who(request, act=True)
    fields = await console.form(request, session)
    target = fields.get("target", "")
    if target and target not in views.target_keys(console.port.config()):
        raise InvalidRequest(f"no target {target[:200]!r}")
    await console.port.state.reset(target or None)
    what = target or "every target"
    log.warning("console: %s reset %s", principal.key_name, what)
    console.port.incidents.add("breaker", f"{what} reset by {principal.key_name}")
    if request.headers.get("hx-request"):
        routes = await _routes(console)
        return console.render("_targets_live.html", request, (session, principal), **routes)
    return RedirectResponse("/ui/targets", 303)


# -- the pool ----------------------------------------------------------------------------------


async def pool(request: Request) -> Response:
    return await _live(request, "pool", _pools, charts=_CHARTS["pool"])


async def pool_live(request: Request) -> Response:
    return await _live(request, "pool", _pools, fragment=True)


async def _pools(console: Console) -> dict[str, object]:
    return {"pools": views.pools(console.port)}


# -- spend -------------------------------------------------------------------------------------


async def _spend_report(console: Console, request: Request) -> views.SpendReport:
    """The report the query asks for (`by`, `since`); 400 for a bad dimension or time."""
    by = [d for d in request.query_params.get("by", "team").split(",") if d.strip()][:4]
    since = request.query_params.get("since", "7d")[:40]
    try:
        return await views.spend_report(console.port, by, since)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


async def spend(request: Request) -> Response:
    console = _console(request)
    who = console.who(request)
    report = await _spend_report(console, request)
    return console.render(
        "spend.html", request, who, page="spend", report=report,
        dimensions=DIMENSIONS, query=request.url.query, cache=console.port.cache_state(),
    )  # fmt: skip


async def purge_cache(request: Request) -> Response:
    """Drop one team's cached answers (or one route's of them)."""
    console = _console(request)
    session, principal = console.who(request, act=True)
    fields = await console.form(request, session)
    team, route = fields.get("team", "").strip(), fields.get("route", "").strip()
    if not team or len(team) > 128 or len(route) > 256:
        raise InvalidRequest("name the team whose cached answers go")
    prefix = f"team:{team}:{route}:" if route else f"team:{team}:"
    removed = await console.port.answers.purge(prefix)
    log.warning("console: %s purged %s from the response cache (%d)", principal.key_name,
                prefix, removed)  # fmt: skip
    return RedirectResponse(f"/ui/spend?purged={removed}", 303)


async def spend_csv(request: Request) -> Response:
    console = _console(request)
    console.who(request)
    report = await _spend_report(console, request)
    name = f"spillover-spend-by-{'-'.join(report.by) or 'all'}-{time.strftime('%Y%m%d')}.csv"
    return Response(
        as_csv(report.rows, report.by),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


# -- limits and budgets ------------------------------------------------------------------------


async def limits(request: Request) -> Response:
    console = _console(request)
    who = console.who(request)
    rows = await views.limits(console.port)
    return console.render("limits.html", request, who, page="limits", rows=rows)


# -- drills ------------------------------------------------------------------------------------


async def drills_page(request: Request) -> Response:
    console = _console(request)
    who = console.who(request)
    return console.render(
        "drills.html", request, who, page="drills",
        scenarios=list(console.drills.scenarios.values()),
        enabled=console.port.config().drills.enabled,
        records=list(reversed(console.drills.records.values())),
        running=console.drills.running,
    )  # fmt: skip


async def run_drill(request: Request) -> Response:
    console = _console(request)
    session, principal = console.who(request, act=True)
    fields = await console.form(request, session)
    if not console.port.config().drills.enabled:
        raise Denied(403, "drills are off: set drills: {enabled: true}")
    server = request.scope.get("server")
    if not server:
        raise InvalidRequest("this gateway listens on no TCP port a drill could reach")
    host, port = server
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    try:
        scale = float(fields.get("scale", "1") or "1")
    except ValueError:
        raise InvalidRequest("scale must be a number") from None
    record = console.drills.start(fields.get("scenario", ""), scale, base, principal.key_name)
    log.warning("console: %s started drill %s", principal.key_name, record.id)
    return RedirectResponse(f"/ui/drills/{record.id}", 303)


def _record(console: Console, drill_id: str) -> DrillRecord:
    record = console.drills.records.get(drill_id)
    if record is None:
        raise NotFound(f"no drill {drill_id[:60]!r} (only the last runs are kept)")
    return record


async def drill(request: Request) -> Response:
    console = _console(request)
    who = console.who(request)
    record = _record(console, request.path_params["drill_id"])
    return console.render("drill.html", request, who, page="drills", record=record)


async def drill_live(request: Request) -> Response:
    console = _console(request)
    who = console.who(request)
    record = _record(console, request.path_params["drill_id"])
    page = console.render("_drill_live.html", request, who, record=record)
    if record.status != "running":
        page.status_code = 286  # htmx: swap this in, then stop polling
    return page


# -- config ------------------------------------------------------------------------------------


async def config(request: Request) -> Response:
    console = _console(request)
    who = console.who(request)
    return console.render(
        "config.html", request, who, page="config",
        text=masked_yaml(console.port.config()), path=console.port.config_path,
        result=None,
    )  # fmt: skip


async def reload(request: Request) -> Response:
    console = _console(request)
    session, principal = console.who(request, act=True)
    await console.form(request, session)
    if not console.port.config_path:
        raise InvalidRequest("this gateway was started without a config file: nothing to reload")
    log.warning("console: %s asked for a reload", principal.key_name)
    result = await console.port.reload("console")
    # A rejected file is an answer shown on the page (200); POST /admin/reload says 400.
    return console.render(
        "config.html", request, (session, principal), page="config",
        text=masked_yaml(console.port.config()), path=console.port.config_path,
        result=result,
    )  # fmt: skip
