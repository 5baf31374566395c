"""Health, metrics and the admin API (FastAPI, with its OpenAPI document). Admin routes
take an admin key in `Authorization: Bearer …`."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.accounting.reports import parse_when, spend
from gateway.drill.faults import FaultSpec
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
from gateway.http.edge import error_body
from gateway.http.openapi import with_openai_paths
from policies.routing import target_key

if TYPE_CHECKING:
    from gateway.http.app import Gateway

log = logging.getLogger("spillover")


def admin_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="Spillover", version="0.1.0", docs_url="/docs", redoc_url=None)
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.openapi = with_openai_paths(app)  # type: ignore[method-assign]

    def admin_key(authorization: str | None = Header(default=None)) -> None:
        keys = gateway.current.proxy.keys
        try:
            principal = keys.authenticate(authorization.encode() if authorization else None)
        except AuthenticationFailed as exc:
            raise HTTPException(401, exc.message) from None
        if not principal.admin:
            raise HTTPException(403, "this key is not an admin key")

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready", tags=["health"])
    async def ready() -> JSONResponse:
        usable = gateway.current.usable_targets()
        problems = [f"route {name} has no usable target" for name, n in usable.items() if not n]
        if gateway.draining:
            problems.append("shutting down")
        if not gateway.accountant.accepting():
            problems.append("the ledger can keep no more rows")
        return JSONResponse(
            {
                "status": "not_ready" if problems else "ready",
                "routes": usable,
                "problems": problems,
            },
            status_code=503 if problems else 200,
        )

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/admin/targets", tags=["admin"], dependencies=[Depends(admin_key)])
    async def targets() -> dict[str, Any]:
        """Each target's breaker, window, cool-down, headroom and latency estimates."""
        now = time.time()
        state = gateway.state
        out: dict[str, Any] = {}
        for name, route in gateway.current.config.routes.items():
            for target in route.targets:
                key = target_key(target)
                view = (await state.views([key], now, route.fail_over_when.window_s))[key]
                entry = out.setdefault(
                    key, {"provider": target.provider, "model": target.model, "routes": []}
                )
                entry["routes"].append(name)
                entry.update(
                    {
                        "breaker": asdict(view.breaker),
                        "window": asdict(
                            state.window_stats(key, now, route.fail_over_when.window_s)
                        ),
                        "cooldown_remaining_s": max(0.0, view.cooldown_until - now),
                        "headroom_blocked_s": max(0.0, view.headroom_until - now),
                    }
                )
        return {
            "state_backend": state.backend,
            "shared": getattr(state, "available", False),
            "targets": out,
        }

    @app.post("/admin/targets/reset", tags=["admin"], dependencies=[Depends(admin_key)])
    async def reset_targets() -> dict[str, str]:
        """Close every breaker and end every cool-down (after fixing an upstream)."""
        await gateway.state.reset()
        log.warning("routing state reset through the admin API")
        return {"status": "reset"}

    @app.get("/admin/spend", tags=["admin"], dependencies=[Depends(admin_key)])
    async def admin_spend(
        by: str = "team", since: str = "30d", until: str | None = None
    ) -> JSONResponse:
        """The figures of `spillover costs`, as JSON."""
        config = gateway.current.config
        dims = [d.strip() for d in by.split(",") if d.strip()]
        now = time.time()
        try:
            rows = await spend(
                config.ledger.url,
                dims,
                parse_when(since, now),
                parse_when(until, now),
                gateway.accountant.prices,
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return JSONResponse({"by": dims, "rows": [r.as_dict() for r in rows]})

    @app.post("/admin/reload", tags=["admin"], dependencies=[Depends(admin_key)])
    async def reload() -> JSONResponse:
        """Validate the config file and swap it in; on errors keep serving the old one."""
        result = await gateway.reloader.reload("admin_api")
        body = {
            "status": "reloaded" if result.ok else "rejected",
            "errors": result.errors,
            "notes": result.notes,
        }
        return JSONResponse(body, status_code=200 if result.ok else 400)

    def drills_on() -> None:
        if not gateway.current.config.drills.enabled:
            raise HTTPException(404, "fault injection is off: set drills: {enabled: true}")

    faults_guard = [Depends(admin_key), Depends(drills_on)]

    @app.post("/admin/faults", tags=["drills"], dependencies=faults_guard, status_code=201)
    async def add_fault(spec: FaultSpec) -> dict[str, object]:
        """Inject a fault (it expires by itself after `duration_s`)."""
        if spec.kind == "redis_down" and gateway.boot_config.state.backend != "redis":
            raise HTTPException(
                409, "redis_down needs shared state: this gateway runs with state.backend: memory"
            )
        longest = gateway.current.config.drills.max_fault_s
        if spec.duration_s > longest:
            raise HTTPException(400, f"duration_s is over drills.max_fault_s ({longest:g} s)")
        fault = gateway.faults.add(spec)
        log.warning(
            "drill: fault %s injected: %s", fault.id, spec.model_dump(exclude_defaults=True)
        )
        return fault.as_dict(time.monotonic())

    @app.get("/admin/faults", tags=["drills"], dependencies=faults_guard)
    async def list_faults() -> dict[str, object]:
        now = time.monotonic()
        return {"faults": [f.as_dict(now) for f in gateway.faults.active()]}

    @app.delete("/admin/faults", tags=["drills"], dependencies=faults_guard)
    async def clear_faults() -> dict[str, int]:
        return {"removed": gateway.faults.remove()}

    @app.delete("/admin/faults/{fault_id}", tags=["drills"], dependencies=faults_guard)
    async def remove_fault(fault_id: str) -> dict[str, int]:
        if not gateway.faults.remove(fault_id):
            raise HTTPException(404, f"no active fault {fault_id!r}")
        return {"removed": 1}

    return app


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


async def _invalid_request(_request: Request, exc: RequestValidationError) -> Response:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
        for e in exc.errors()[:10]
    )
    return _error(400, f"invalid request: {problems}"[:2000])
