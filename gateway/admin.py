"""Health, metrics and the admin API (FastAPI, with its OpenAPI document). Admin routes
take an admin key in `Authorization: Bearer …`."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.errors import AuthenticationFailed
from gateway.faults import FaultSpec
from gateway.reports import parse_when, spend
from policies.routing import target_key

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("spillover")


def admin_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(title="Spillover", version="0.1.0", docs_url="/docs", redoc_url=None)

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
        ok = all(n > 0 for n in usable.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "routes": usable},
            status_code=200 if ok else 503,
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
                {n: p.kind for n, p in config.providers.items()},
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
