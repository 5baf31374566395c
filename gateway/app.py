"""Assemble the gateway: providers from the config, the hot `/v1/*` ASGI app, and a FastAPI
app for health, metrics and (later) admin routes. The top-level ASGI callable dispatches by
path and runs startup and shutdown."""

from __future__ import annotations

import gc
import logging
import os
import time
from dataclasses import asdict
from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.account import Accountant
from gateway.api import ProxyApp, Receive, Scope, Send
from gateway.attempt import AttemptRunner
from gateway.auth import KeyStore
from gateway.errors import AuthenticationFailed
from gateway.metrics import GatewayMetrics
from gateway.providers import build_provider
from gateway.providers.base import Provider
from gateway.state.memory import MemoryState
from gateway.state.redis import RedisState
from policies.loader import load_config
from policies.routing import target_key
from policies.schema import GatewayConfig, StateConfig

log = logging.getLogger("spillover")

CONFIG_ENV = "SPILLOVER_CONFIG"


class Gateway:
    """The running gateway: config, providers and the apps that serve them."""

    def __init__(self, config: GatewayConfig, config_path: str = "") -> None:
        self.config = config
        self.config_path = config_path
        self.metrics = GatewayMetrics()
        self.providers: dict[str, Provider] = {
            name: build_provider(name, provider) for name, provider in config.providers.items()
        }
        self.started: dict[str, bool] = dict.fromkeys(self.providers, False)
        self.accountant = Accountant(self.metrics, log_access=config.server.access_log)
        self.state = build_state(config.state, self.metrics)
        self.attempts = AttemptRunner(
            self.providers,
            {name: p.timeouts for name, p in config.providers.items()},
            self.metrics,
            self.state,
        )
        self.proxy = ProxyApp(config, self.providers, self.metrics, self.accountant, self.attempts)
        self.admin = self._admin_app()
        self.metrics.config_loaded.set(time.time())

    async def start(self) -> None:
        for name, provider in self.providers.items():
            try:
                await provider.start()
                self.started[name] = True
            except Exception:
                log.exception("provider %s failed to start; its targets are unusable", name)
        for route, usable in self.usable_targets().items():
            self.metrics.routes.labels(route).set(usable)
        # Everything built so far lives as long as the process: move it out of the
        # collector's sight so a full collection under load does not rescan it (p99 spikes).
        gc.collect()
        gc.freeze()
        log.info(
            "spillover ready: %d providers, %d routes", len(self.providers), len(self.config.routes)
        )

    async def stop(self) -> None:
        await self.state.close()
        for provider in self.providers.values():
            try:
                await provider.close()
            except Exception:
                log.exception("closing provider %s failed", provider.name)

    def usable_targets(self) -> dict[str, int]:
        """A target is usable when its provider started and serves one of the route's
        endpoints. Upstream health is not readiness: a degraded upstream must not pull every
        gateway replica out of the load balancer; failover handles it."""
        out: dict[str, int] = {}
        for name, route in self.config.routes.items():
            wanted = set(route.endpoints or ("chat", "completions", "embeddings"))
            out[name] = sum(
                1
                for t in route.targets
                if self.started[t.provider] and wanted & self.providers[t.provider].supports
            )
        return out

    def _admin_app(self) -> FastAPI:
        app = FastAPI(title="Spillover", version="0.1.0", docs_url="/docs", redoc_url=None)

        @app.get("/health/live", tags=["health"])
        async def live() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/health/ready", tags=["health"])
        async def ready() -> JSONResponse:
            usable = self.usable_targets()
            ok = all(n > 0 for n in usable.values())
            return JSONResponse(
                {"status": "ready" if ok else "not_ready", "routes": usable},
                status_code=200 if ok else 503,
            )

        keys = KeyStore(self.config)

        def admin_key(authorization: str | None = Header(default=None)) -> None:
            try:
                principal = keys.authenticate(authorization.encode() if authorization else None)
            except AuthenticationFailed as exc:
                raise HTTPException(401, exc.message) from None
            if not principal.admin:
                raise HTTPException(403, "this key is not an admin key")

        @app.get("/admin/targets", tags=["admin"], dependencies=[Depends(admin_key)])
        async def targets() -> dict[str, Any]:
            """Each target's breaker, window, cool-down and latency estimates."""
            now = time.time()
            known = self.state.describe(now, 60.0)
            out: dict[str, Any] = {}
            for name, route in self.config.routes.items():
                for target in route.targets:
                    key = target_key(target)
                    view = (await self.state.views([key], now, route.fail_over_when.window_s))[key]
                    out[key] = {
                        "provider": target.provider,
                        "model": target.model,
                        "routes": sorted({*out.get(key, {}).get("routes", []), name}),
                        "breaker": asdict(view.breaker),
                        "window": asdict(
                            self.state.window_stats(key, now, route.fail_over_when.window_s)
                        ),
                        "cooldown_remaining_s": max(0.0, view.cooldown_until - now),
                        "headroom_blocked_s": max(0.0, view.headroom_until - now),
                        "seen": key in known,
                    }
            return {
                "state_backend": self.state.backend,
                "shared": getattr(self.state, "available", False),
                "targets": out,
            }

        @app.post("/admin/targets/reset", tags=["admin"], dependencies=[Depends(admin_key)])
        async def reset_targets() -> dict[str, str]:
            """Close every breaker and end every cool-down (after fixing an upstream)."""
            await self.state.reset()
            log.warning("routing state reset through the admin API")
            return {"status": "reset"}

        @app.get("/metrics", tags=["health"])
        async def metrics() -> Response:
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and self.proxy.handles(scope):
            await self.proxy(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.admin(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_state(config: StateConfig, metrics: GatewayMetrics) -> MemoryState | RedisState:
    if config.backend == "memory":
        return MemoryState()
    metrics.state_backend_up.set(1)
    return RedisState(config, on_change=lambda up: metrics.state_backend_up.set(1 if up else 0))


def app_from_env() -> Any:
    """uvicorn factory (`--factory`): the config path comes from SPILLOVER_CONFIG."""
    path = os.environ[CONFIG_ENV]
    return Gateway(load_config(path), path)
