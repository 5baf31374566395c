"""`spillover pool launch`: start and watch local `vllm serve` processes, one per replica URL
of a pool's `launch` section. A start counts only once /health answers (model load takes
time, so the start timeout is long); a process that exits or never comes up is restarted with
exponential backoff; Ctrl-C or SIGTERM stops every process group by its PID."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from policies.pool import Launch, VllmPoolProvider
from policies.schema import GatewayConfig

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


class ReplicaProcess:
    def __init__(self, model: str, url: str, launch: Launch, run_dir: Path, out: Printer):
        self.model = model
        self.url = url.rstrip("/")
        self.launch = launch
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

    async def watch(self, client: httpx.AsyncClient) -> None:
        backoff = self.launch.restart_backoff_s
        while True:
            self.start()
            started = time.monotonic()
            if await self._up(client):
                self.out.print(
                    f"vllm on {self.url} is up after {time.monotonic() - started:.1f} s",
                    highlight=False,
                )
                while self.process is not None and self.process.poll() is None:  # noqa: ASYNC110
                    await asyncio.sleep(1)  # a child process: nothing to await but polling
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


def launchable(config: GatewayConfig, only: str | None) -> list[tuple[str, VllmPoolProvider]]:
    pools = [
        (name, p)
        for name, p in config.providers.items()
        if isinstance(p, VllmPoolProvider) and (only is None or name == only)
    ]
    if not pools or not all(p.launch is not None for _, p in pools):
        raise ValueError("no vllm_pool provider with a 'launch' section to start")
    return pools


async def supervise_pools(
    config: GatewayConfig, only: str | None, out: Printer, run_dir: Path = Path(".spillover")
) -> None:
    processes = [
        ReplicaProcess(pool.model, url, pool.launch, run_dir, out)
        for _, pool in launchable(config, only)
        if pool.launch is not None
        for url in pool.replicas
    ]
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    async with httpx.AsyncClient() as client:
        watchers = [asyncio.create_task(p.watch(client)) for p in processes]
        try:
            await stopping.wait()
        finally:
            for task in watchers:
                task.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)
            for process in processes:
                process.stop()
