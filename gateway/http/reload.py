"""Hot reload: on SIGHUP, a change of the config file, or `POST /admin/reload`. The new
file is validated first and swapped in atomically; on any error the running config keeps
serving, and the reason goes to the caller, the log and a metric."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from policies.loader import ConfigError, load_config
from policies.schema import GatewayConfig

log = logging.getLogger("spillover.reload")


@dataclass
class ReloadResult:
    ok: bool
    trigger: str
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Reloader:
    def __init__(
        self,
        path: str,
        apply: Callable[[GatewayConfig], Awaitable[list[str]]],
        on_result: Callable[[ReloadResult], None],
        poll_s: float,
        check: Callable[[GatewayConfig], list[str]] = lambda _config: [],
    ) -> None:
        self._path = path
        self._apply = apply  # swaps the config in; returns notes (e.g. "needs a restart")
        self._check = check  # what a valid file may still clash with (stored keys' names)
        self._on_result = on_result
        self._poll_s = poll_s
        self._lock = asyncio.Lock()
        self._seen = self._stat()
        self._watcher: asyncio.Task[None] | None = None

    def _stat(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self._path)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size

    async def reload(self, trigger: str) -> ReloadResult:
        async with self._lock:
            self._seen = self._stat()
            try:
                config = await asyncio.to_thread(load_config, self._path)
            except ConfigError as exc:
                result = ReloadResult(False, trigger, [str(i) for i in exc.issues])
            except OSError as exc:
                result = ReloadResult(False, trigger, [f"{self._path}: {exc.strerror}"])
            else:
                clashes = self._check(config)
                if clashes:
                    result = ReloadResult(False, trigger, clashes)
                else:
                    result = ReloadResult(True, trigger, notes=await self._apply(config))
        if result.ok:
            log.warning(
                "config reloaded (%s) from %s%s",
                trigger,
                self._path,
                "".join(f"; {n}" for n in result.notes),
            )
        else:
            log.error(
                "config reload (%s) rejected, still serving the previous config: %s",
                trigger,
                " | ".join(result.errors),
            )
        self._on_result(result)
        return result

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(self.reload("sighup")))
        if self._poll_s > 0:
            self._watcher = loop.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            current = self._stat()
            if current is not None and current != self._seen:
                await self.reload("file_changed")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
