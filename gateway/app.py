"""Assemble the gateway: providers from the config, the hot `/v1/*` ASGI app, and a FastAPI
app for health, metrics and (later) admin routes. The top-level ASGI callable dispatches by
path and runs startup and shutdown."""

from __future__ import annotations

import gc
import logging
import os
import time
from typing import Any

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.account import Accountant
from gateway.api import ProxyApp, Receive, Scope, Send
from gateway.metrics import GatewayMetrics
from gateway.providers import build_provider
from gateway.providers.base import Provider
from policies.loader import load_config
from policies.schema import GatewayConfig

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
        self.proxy = ProxyApp(config, self.providers, self.metrics, self.accountant)
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


def app_from_env() -> Any:
    """uvicorn factory (`--factory`): the config path comes from SPILLOVER_CONFIG."""
    path = os.environ[CONFIG_ENV]
    return Gateway(load_config(path), path)
