"""Assemble the gateway: the serving generation (config, providers, the hot `/v1/*` app),
the shared routing state, the reloader and the FastAPI app for health, metrics and admin.
The top-level ASGI callable dispatches by path and runs startup and shutdown."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.assembly import Generation, build_core, build_generation, close_generation
from gateway.errors import NotFound
from gateway.http import health
from gateway.http.console.incidents import Incidents
from gateway.http.console.revocations import Revocations
from gateway.http.console.sampler import Sampler
from gateway.http.console.session import Sessions, SignInThrottle, process_secret
from gateway.http.edge import guard_admin, send_error
from gateway.http.heavy_lane import HeavyLane
from gateway.http.lane_process import LANE_ENV, LANE_SOCKET_ENV
from gateway.http.proxy import ProxyApp
from gateway.http.reload import Reloader, ReloadResult
from gateway.http.view import GatewayView
from gateway.logs import setup_logging
from gateway.metrics import GatewayMetrics
from gateway.providers import ProviderFactory, build_provider
from policies.loader import load_config
from policies.schema import GatewayConfig

if TYPE_CHECKING:
    from gateway.http.console.drills import ConsoleDrills

log = logging.getLogger("spillover")

CONFIG_ENV = "SPILLOVER_CONFIG"
LOG_LEVEL_ENV = "SPILLOVER_LOG_LEVEL"  # serve → its worker processes


class Gateway:
    """The running gateway. `current` is swapped whole on reload."""

    def __init__(
        self,
        config: GatewayConfig,
        config_path: str = "",
        build_provider: ProviderFactory = build_provider,
        span_exporter: Any = None,
    ) -> None:
        """`span_exporter`: an OpenTelemetry SDK exporter to trace into instead of OTLP."""
        self.boot_config = config
        self.config_path = config_path
        self.lane = os.environ.get(LANE_ENV, "")  # "heavy" in the heavy lane's process
        core = self.core = build_core(config, build_provider, span_exporter)
        self.metrics = core.metrics
        self.faults = core.faults
        self._admin: ASGIApp | None = None  # built at the first request it answers
        self.admin_throttle = SignInThrottle(attempts=20, window_s=60.0)
        self.incidents = Incidents()
        core.on_breaker = self.incidents.breaker_changed
        console = config.console
        self.sampler = Sampler(self.metrics, console.sample_s) if console.enabled else None
        self._console_drills: ConsoleDrills | None = None
        secret = console.session_secret
        self.console_sessions = Sessions(
            secret.get_secret_value().encode() if secret else process_secret(),
            console.session_ttl_s,
            Revocations(core.backends.shared),  # where state lives: shared and kept, or here
        )
        # Built at the first /ui request: its templates (Jinja2, ~9 MB) are no cost until then.
        self._console: ASGIApp | None = None
        self.reloader = Reloader(
            config_path,
            self._swap,
            self._reloaded,
            # The lane hears of no SIGHUP or /admin/reload: it looks at the file itself.
            (config.server.reload_poll_s or (2.0 if self.lane else 0)) if config_path else 0,
            core.keyring.clashes,
        )
        self.heavy_lane = _heavy_lane(config, self.metrics) if not self.lane else None
        if self.heavy_lane is not None:
            core.responses.for_heavy_lane = self.heavy_lane.takes_history
        self._current: Generation | None = None
        self._proxy: ProxyApp | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self.draining = False  # SIGTERM seen: not ready, still serving
        self.view = GatewayView(
            core, lambda: self.current, lambda: self.draining, self.reloader.reload,
            self.incidents, self.sampler, config_path, self.lane, self.heavy_lane,
        )  # fmt: skip

    @property
    def current(self) -> Generation:
        assert self._current is not None, "gateway not started"
        return self._current

    async def start(self) -> None:
        await self.core.start()
        clashes = self.core.keyring.clashes(self.boot_config)
        if clashes:
            raise ValueError("; ".join(clashes))
        if self.heavy_lane is not None:
            await self.heavy_lane.start()
        self._serve(await build_generation(self.core, self.boot_config))
        self.metrics.config_reload_ok.set(1)
        if self.config_path:
            self.reloader.start()
        if self.sampler is not None:
            self.sampler.start(time.time())
        self.console_sessions.revoked.start()
        self._drain_on_sigterm()
        # Everything built so far lives as long as the process: move it out of the
        # collector's sight so a full collection under load does not rescan it (p99 spikes).
        gc.collect()
        gc.freeze()
        log.info(
            "spillover ready: %d providers, %d routes",
            len(self.current.providers),
            len(self.current.config.routes),
        )

    def _drain_on_sigterm(self) -> None:
        """SIGTERM first makes readiness fail for `server.drain_s` while requests are still
        served; then the server's own handler stops accepting and waits for what runs."""
        if threading.current_thread() is not threading.main_thread():
            return  # an embedded server (tests): signals are not ours to take
        stop = signal.getsignal(signal.SIGTERM)
        if not callable(stop):
            return
        loop = asyncio.get_running_loop()
        drain_s = self.boot_config.server.drain_s

        def stop_later() -> None:
            if self.draining:
                return
            self.draining = True
            log.warning("SIGTERM: not ready; stopping in %.1f s", drain_s)
            loop.call_later(drain_s, stop, signal.SIGTERM, None)

        signal.signal(signal.SIGTERM, lambda _sig, _frame: loop.call_soon_threadsafe(stop_later))

    async def _swap(self, config: GatewayConfig) -> list[str]:
        notes = [
            f"{part} changed: takes effect after a restart"
            for part in ("server", "state", "tracing", "console")
            if getattr(config, part) != getattr(self.boot_config, part)
        ]
        old = self._current
        self._serve(await build_generation(self.core, config, old))
        if old is not None:
            task = asyncio.get_running_loop().create_task(
                close_generation(old, self.boot_config.server.graceful_shutdown_s)
            )
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        return notes

    def _serve(self, generation: Generation) -> None:
        self.core.configure(generation.config, generation)
        self._current = generation
        self._proxy = ProxyApp(generation.pipeline, self.heavy_lane)

    def _reloaded(self, result: ReloadResult) -> None:
        self.metrics.child(
            self.metrics.config_reloads, result.trigger, "ok" if result.ok else "error"
        ).inc()
        self.metrics.config_reload_ok.set(1 if result.ok else 0)
        self.incidents.reloaded(result.ok, result.trigger, result.errors)

    async def stop(self) -> None:
        await self.reloader.stop()
        if self._console_drills is not None:
            await self._console_drills.stop()
        if self.sampler is not None:
            await self.sampler.stop()
        await self.console_sessions.revoked.close()
        for task in list(self._retiring):
            await task
        if self._current is not None:
            await close_generation(self._current, 0)
        if self.heavy_lane is not None:
            await self.heavy_lane.close()
        await self.core.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            proxy = self._proxy
            assert proxy is not None, "gateway not started"
            if proxy.pipeline.handles(scope["path"]):
                await proxy(scope, receive, send)
                return
            path: str = scope["path"]
            if path in health.PATHS:
                await health.answer(self.view, scope, send)
                return
            if path.startswith("/v1/") or path == "/v1":
                shown = path if len(path) <= 200 else path[:200] + "…"
                await send_error(send, NotFound(f"no such endpoint: {shown}"))
                return
            if path == "/ui" or path.startswith("/ui/"):
                if self.boot_config.console.enabled:
                    await self._console_app()(scope, receive, send)
                else:
                    await send_error(send, NotFound("the console is off (console.enabled)"))
                return
            if path.startswith("/admin"):
                guarded = await guard_admin(
                    scope, receive, send, proxy.pipeline.keys, self.admin_throttle
                )
                if guarded is None:
                    return
                receive = guarded
        elif kind == "lifespan":
            await self._lifespan(receive, send)
            return
        await self._admin_app()(scope, receive, send)

    def _admin_app(self) -> ASGIApp:
        if self._admin is None:
            from gateway.http.admin import admin_app  # FastAPI: only when asked for

            self._admin = admin_app(self.view)
        return self._admin

    def _console_app(self) -> ASGIApp:
        if self._console is None:
            from gateway.http.console.app import console_app
            from gateway.http.console.drills import ConsoleDrills

            self._console_drills = ConsoleDrills(self.faults, self.incidents)
            self._console = console_app(self.view, self.console_sessions, self._console_drills)
        return self._console

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


def _heavy_lane(config: GatewayConfig, metrics: GatewayMetrics) -> HeavyLane | None:
    """The workers' way to the heavy lane, when `spillover serve` started one."""
    socket = os.environ.get(LANE_SOCKET_ENV)
    if not socket:
        return None
    server = config.server
    return HeavyLane(socket, server.heavy_lane_bytes, server.max_body_bytes, metrics)


def app_from_env() -> Any:
    """uvicorn factory (`--factory`): the config path comes from SPILLOVER_CONFIG. Logging is
    set again here: a worker process of its own starts without the parent's handlers."""
    path = os.environ[CONFIG_ENV]
    config = load_config(path)
    level = os.environ.get(LOG_LEVEL_ENV, "info")
    setup_logging(level, config.server.log_format, os.environ.get(LANE_ENV, ""))
    return Gateway(config, path)
