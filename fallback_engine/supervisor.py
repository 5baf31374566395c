"""One local `vllm serve` process of `spillover pool launch` (`launch.py`). A start counts
only once /health answers (model load takes time, so the start timeout is long) and the pool's
warm-up request is answered; then, for a pool that discovers a file, the replica is listed
there (the gateway routes to it after its own warm-up check). A process that exits or never
comes up is unlisted and restarted with exponential backoff; stopping one stops its whole
process group."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from fallback_engine.listing import write_listing
from fallback_engine.scrape import parse
from policies.pool import Launch, VllmPoolProvider

_QUIET_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


class Printer(Protocol):
    def print(self, *objects: object, highlight: bool | None = None) -> None: ...


def serve_command(launch: Launch, model: str, url: str) -> list[str]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"replica URL {url!r} needs a host and a port to be launched")
    command = [
        launch.vllm, "serve", launch.model_path,
        "--host", parts.hostname, "--port", str(parts.port),
        "--served-model-name", model,
        "--max-model-len", str(launch.max_model_len),
        "--max-num-seqs", str(launch.max_num_seqs),
        "--enable-prompt-tokens-details",
        "--enable-prefix-caching" if launch.prefix_caching else "--no-enable-prefix-caching",
    ]  # fmt: skip
    if launch.kv_blocks is not None:
        command += ["--num-gpu-blocks-override", str(launch.kv_blocks)]
    if launch.kv_cache_gib is not None:
        command += ["--kv-cache-memory-bytes", str(int(launch.kv_cache_gib * 2**30))]
    if launch.speculative:
        command += ["--speculative-config", json.dumps(launch.speculative)]
    return command + launch.extra_args


class Listed:
    """The replicas listed in the pool's discovery file (`discover: {file}`); a pool that
    lists its replicas in the config has no file, and listing is a no-op."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.urls: set[str] = set()
        self.on_change: Callable[[str, bool], None] | None = None  # (url, listed now)
        if path is not None:
            write_listing(path, [])  # a previous run's list is not what runs now

    def add(self, url: str) -> None:
        self._write(self.urls | {url})

    def remove(self, url: str) -> None:
        self._write(self.urls - {url})

    def _write(self, urls: set[str]) -> None:
        if urls != self.urls and self.path is not None:
            write_listing(self.path, sorted(urls))
        changed = urls ^ self.urls
        self.urls = urls
        if self.on_change is not None:
            for url in sorted(changed):
                self.on_change(url, url in urls)


class ReplicaProcess:
    def __init__(self, pool: VllmPoolProvider, url: str, run_dir: Path, out: Printer):
        assert pool.launch is not None
        self.pool = pool
        self.model = pool.model
        self.url = url.rstrip("/")
        self.launch: Launch = pool.launch
        self.out = out
        self.port = urlsplit(url).port
        self.log_path = run_dir / f"vllm-{self.port}.log"
        self.pid_path = run_dir / f"vllm-{self.port}.pid"
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        env = {**os.environ, **_QUIET_ENV, **self.launch.env}
        if self.launch.kv_cache_gib is not None:
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(self.launch.kv_cache_gib))))
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                serve_command(self.launch, self.model, self.url),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: stopped as one
            )
        self.pid_path.write_text(f"{self.process.pid}\n")
        self.out.print(f"started vllm on {self.url} (pid {self.process.pid})", highlight=False)

    def stop(self, grace_s: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.pid_path.unlink(missing_ok=True)
        self.out.print(f"stopped vllm on {self.url} (pid {process.pid})", highlight=False)

    async def _up(self, client: httpx.AsyncClient) -> bool:
        """Wait for /health within the start timeout; False if the process died or timed out."""
        deadline = time.monotonic() + self.launch.start_timeout_s
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(self.url + "/health", timeout=2)).status_code == 200:
                    return True
            await asyncio.sleep(1)
        return False

    def _headers(self) -> dict[str, str]:
        key = self.pool.api_key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}

    async def _warm(self, client: httpx.AsyncClient) -> bool:
        """The pool's warm-up request, answered: the first user does not pay for it."""
        warm = self.pool.warm_up
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": warm.prompt}],
            "max_tokens": warm.max_tokens,
        }
        with contextlib.suppress(httpx.HTTPError):
            reply = await client.post(
                self.url + "/v1/chat/completions",
                json=body,
                headers=self._headers(),
                timeout=warm.timeout_s,
            )
            return reply.status_code == 200
        return False

    async def in_flight(self, client: httpx.AsyncClient) -> float | None:
        """Requests running or waiting on the replica, from its /metrics (None: no answer)."""
        with contextlib.suppress(httpx.HTTPError, ValueError):
            reply = await client.get(self.url + "/metrics", timeout=2)
            if reply.status_code == 200:
                snapshot = parse(reply.text, time.monotonic())
                return snapshot.running + snapshot.waiting
        return None

    async def watch(self, client: httpx.AsyncClient, listed: Listed) -> None:
        """Run the replica, listed while it is up and warm, until cancelled (the process is
        left running: the caller drains and stops it)."""
        backoff = self.launch.restart_backoff_s
        while True:
            self.start()
            started = time.monotonic()
            # Warmed here only when this supervisor lists it: a pool that names its replicas
            # in the config has the gateway warm them (once, before routing).
            if await self._up(client) and (listed.path is None or await self._warm(client)):
                self.out.print(
                    f"vllm on {self.url} is up{' and warm' if listed.path else ''} "
                    f"after {time.monotonic() - started:.1f} s",
                    highlight=False,
                )
                listed.add(self.url)
                while self.process is not None and self.process.poll() is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.5)  # a child process: nothing to await but polling
                listed.remove(self.url)
                if time.monotonic() - started > 60:
                    backoff = self.launch.restart_backoff_s  # it ran a while: start afresh
                why = "exited"
            else:
                why = "did not come up"
            self.stop(grace_s=5)
            self.restarts += 1
            self.out.print(
                f"vllm on {self.url} {why}; restart {self.restarts} in {backoff:.0f} s "
                f"(log: {self.log_path})",
                highlight=False,
            )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.launch.restart_backoff_max_s)

    async def retire(self, client: httpx.AsyncClient, listed: Listed) -> None:
        """Drain, then stop: unlist the replica, give the gateways one discovery interval to
        read the list (they stop routing to it), wait until what they sent has finished —
        nothing running or waiting on it, twice in a row — within `drain_timeout_s`, then
        stop the process. A replica named in the config cannot be unlisted: stopped now."""
        if listed.path is None:
            await asyncio.to_thread(self.stop)
            return
        listed.remove(self.url)
        started = time.monotonic()
        assert self.pool.discover is not None  # a listing is a discovery file
        await asyncio.sleep(self.pool.discover.every_s + 0.5)
        deadline = started + self.launch.drain_timeout_s
        quiet = 0
        while quiet < 2 and time.monotonic() < deadline:
            in_flight = await self.in_flight(client)
            if in_flight is None:  # the process is gone (or not answering): nothing to drain
                break
            quiet = quiet + 1 if in_flight == 0 else 0
            await asyncio.sleep(0.25)
        self.out.print(
            f"vllm on {self.url} drained in {time.monotonic() - started:.1f} s",
            highlight=False,
        )
        await asyncio.to_thread(self.stop)
