"""The admin API (FastAPI, with the OpenAPI document at /openapi.json), built at the
first request it answers; health and metrics are `gateway.http.health`. Admin routes take an
admin key in `Authorization: Bearer …`."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.drill.faults import FaultSpec
from gateway.error_wire import error_body, protocol_headers
from gateway.errors import (
    AuthenticationFailed,
    ClientError,
    Conflict,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    SpilloverError,
)
from gateway.http.admin_keyring import keyring_router
from gateway.http.admin_port import AdminPort
from gateway.http.openapi import with_openai_paths
from gateway.state.contracts import RoutingState
from policies.routing import target_key
from policies.schema import GatewayConfig

log = logging.getLogger("spillover")


def admin_app(port: AdminPort) -> FastAPI:
    # No /docs: Swagger UI would load its scripts from a CDN, unpinned (no integrity hash
    # can hold for a moving version) — /openapi.json goes into any OpenAPI viewer instead.
    app = FastAPI(title="Spillover", version="0.1.0", docs_url=None, redoc_url=None)
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.openapi = with_openai_paths(app)  # type: ignore[method-assign]

    def admin_key(authorization: str | None = Header(default=None)) -> None:
        try:
            principal = port.authenticate(authorization.encode() if authorization else None)
        except AuthenticationFailed as exc:
            raise HTTPException(401, exc.message) from None
        if not principal.admin:
            raise HTTPException(403, "this key is not an admin key")

    app.include_router(_routing(port), dependencies=[Depends(admin_key)])
    app.include_router(_cache(port), dependencies=[Depends(admin_key)])
    app.include_router(_drills(port), dependencies=[Depends(admin_key)])
    app.include_router(keyring_router(port))  # its own check: viewers may read
    app.add_exception_handler(SpilloverError, _gateway_error)  # type: ignore[arg-type]
    return app


def _routing(port: AdminPort) -> APIRouter:
    router = APIRouter(tags=["admin"])

    @router.get("/admin/targets")
    async def targets() -> dict[str, Any]:
        """Each target's breaker, window, cool-down, headroom and latency estimates."""
        return {
            "state_backend": port.state.backend,
            "shared": getattr(port.state, "available", False),
            "targets": await _targets(port.state, port.config(), time.time()),
        }

    @router.get("/admin/readiness")
    async def readiness() -> dict[str, Any]:
        """Why `/health/ready` says what it says: usable targets per route, and each
        problem by name (the unauthenticated probe tells status only)."""
        usable, problems = port.problems()
        return {
            "ready": not problems,
            "routes": usable,
            "problems": problems,
            "notices": port.notices(),
        }

    @router.post("/admin/targets/reset")
    async def reset_targets() -> dict[str, str]:
        """Close every breaker and end every cool-down (after fixing an upstream)."""
        await port.state.reset()
        log.warning("routing state reset through the admin API")
        port.incidents.add("breaker", "every target reset through the admin API")
        return {"status": "reset"}

    @router.get("/admin/spend")
    async def admin_spend(
        by: str = "team", since: str = "30d", until: str | None = None
    ) -> JSONResponse:
        """The figures of `spillover costs`, as JSON."""
        from gateway.accounting.reports import parse_when, spend  # the SQL toolkit, on demand

        dims = [d.strip() for d in by.split(",") if d.strip()]
        now = time.time()
        from sqlalchemy.exc import SQLAlchemyError

        try:
            window = (parse_when(since, now), parse_when(until, now))
            rows = await spend(port.config().ledger.url, dims, *window, port.prices())
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        except (SQLAlchemyError, OSError) as exc:  # never the SQL or the driver's words
            log.warning("admin spend: the ledger could not be read (%s)", type(exc).__name__)
            raise HTTPException(503, "the ledger cannot be read right now") from None
        return JSONResponse({"by": dims, "rows": [r.as_dict() for r in rows]})

    @router.post("/admin/reload")
    async def reload() -> JSONResponse:
        """Validate the config file and swap it in; on errors keep serving the old one."""
        result = await port.reload("admin_api")
        body = {
            "status": "reloaded" if result.ok else "rejected",
            "errors": result.errors,
            "notes": result.notes,
        }
        return JSONResponse(body, status_code=200 if result.ok else 400)

    return router


def _cache(port: AdminPort) -> APIRouter:
    router = APIRouter(tags=["admin"])

    @router.get("/admin/cache")
    async def cache_state() -> dict[str, Any]:
        """The response cache: where it lives, what it holds (this process, for memory), and
        the hits, misses, hit ratio and dollars saved since this process started."""
        return port.cache_state()

    @router.delete("/admin/cache")
    async def purge_cache(team: str | None = None, key: str | None = None,
                          route: str | None = None) -> dict[str, int]:  # fmt: skip
        """Drop cached answers: a team's (or a key's), optionally one route's."""
        if (team is None) == (key is None):
            raise HTTPException(400, "give one of team or key (and optionally route)")
        tenant = f"team:{team}" if team is not None else f"key:{key}"
        prefix = f"{tenant}:{route}:" if route is not None else f"{tenant}:"
        removed = await port.answers.purge(prefix)
        log.warning("response cache purged through the admin API: %s (%d entries)", prefix, removed)
        return {"removed": removed}

    return router


async def _targets(state: RoutingState, config: GatewayConfig, now: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, route in config.routes.items():
        window_s = route.fail_over_when.window_s
        for target in route.targets:
            key = target_key(target)
            view = (await state.views([key], now, window_s))[key]
            entry = out.setdefault(
                key, {"provider": target.provider, "model": target.model, "routes": []}
            )
            entry["routes"].append(name)
            entry.update(
                {
                    "breaker": asdict(view.breaker),
                    "window": asdict(state.window_stats(key, now, window_s)),
                    "cooldown_remaining_s": max(0.0, view.cooldown_until - now),
                    "headroom_blocked_s": max(0.0, view.headroom_until - now),
                }
            )
    return out


def _drills(port: AdminPort) -> APIRouter:
    def drills_on() -> None:
        if not port.config().drills.enabled:
            raise HTTPException(404, "fault injection is off: set drills: {enabled: true}")

    router = APIRouter(tags=["drills"], dependencies=[Depends(drills_on)])

    @router.post("/admin/faults", status_code=201)
    async def add_fault(spec: FaultSpec) -> dict[str, object]:
        """Inject a fault (it expires by itself after `duration_s`)."""
        if spec.kind == "redis_down" and not port.shares_state():
            raise HTTPException(
                409, "redis_down needs shared state: this gateway runs with state.backend: memory"
            )
        longest = port.config().drills.max_fault_s
        if spec.duration_s > longest:
            raise HTTPException(400, f"duration_s is over drills.max_fault_s ({longest:g} s)")
        fault = port.faults.add(spec)
        where = spec.provider or spec.route or "every target"
        port.incidents.add("fault", f"fault {fault.id} injected: {spec.kind} on {where}", bad=True)
        log.warning(
            "drill: fault %s injected: %s", fault.id, spec.model_dump(exclude_defaults=True)
        )
        return fault.as_dict(time.monotonic())

    @router.get("/admin/faults")
    async def list_faults() -> dict[str, object]:
        now = time.monotonic()
        return {"faults": [f.as_dict(now) for f in port.faults.active()]}

    @router.delete("/admin/faults")
    async def clear_faults() -> dict[str, int]:
        return {"removed": port.faults.remove()}

    @router.delete("/admin/faults/{fault_id}")
    async def remove_fault(fault_id: str) -> dict[str, int]:
        if not port.faults.remove(fault_id):
            raise HTTPException(404, f"no active fault {fault_id!r}")
        return {"removed": 1}

    return router


_CLIENT_ERRORS: dict[int, type[ClientError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """The gateway's one error shape (`edge.error_body`), for the admin API too."""
    kind = _CLIENT_ERRORS.get(status)
    exc: SpilloverError = kind(message) if kind else ClientError(message)
    if status == 405:
        exc = MethodNotAllowed(message, allow=(headers or {}).get("Allow", ""))
    exc.status = status  # FastAPI's own statuses (409, 422, …) keep their number
    if status >= 500:
        exc.error_type = "api_error"
    return Response(error_body(exc), status, headers, media_type="application/json")


async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
    return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def _gateway_error(_request: Request, exc: SpilloverError) -> Response:
    headers = {k.decode(): v.decode() for k, v in protocol_headers(exc)}
    return Response(error_body(exc), exc.status, headers, media_type="application/json")


async def _invalid_request(_request: Request, exc: RequestValidationError) -> Response:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
        for e in exc.errors()[:10]
    )
    return _error(400, f"invalid request: {problems}"[:2000])
