"""Real processes for the tests: mock upstreams and gateways started as subprocesses on free
loopback ports, stopped by PID at teardown; the configs they run."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent
GATEWAY_KEY = "sk-test-gateway-key"
ADMIN_KEY = "sk-test-admin-key"
OPENAI_UPSTREAM_KEY = "sk-upstream-openai-secret"
ANTHROPIC_UPSTREAM_KEY = "sk-ant-upstream-secret"


def free_port() -> int:
    return free_ports(1)[0]


def _ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n: int, consecutive: bool = False) -> list[int]:
    """n distinct free ports (`consecutive`: n in a row, for a process that takes the next
    ones too), held bound until all are picked. Chosen below the ephemeral range: a port the
    kernel may give any outgoing connection in the meantime is one a server may find taken
    (the demo lost its port that way)."""
    high = max(_ephemeral_low() - n, 20_000 + n)
    for _ in range(200):
        sockets: list[socket.socket] = []
        try:
            first = random.randrange(20_000, high)
            picks = (
                [first + i for i in range(n)]
                if consecutive
                else random.sample(range(20_000, high), n)
            )
            for port in picks:
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return picks
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no {n} free ports found")


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        # SIGINT: the same graceful stop as SIGTERM without its readiness drain (drain_s),
        # which the SIGTERM tests exercise on their own.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_process(
    name: str,
    args: list[str],
    url: str,
    ready_path: str,
    log_dir: Path,
    env: dict[str, str] | None = None,
    timeout: float = 30,
) -> Proc:
    log = log_dir / f"{name}.log"
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    proc = Proc(name, process, url, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{proc.output()}")
        try:
            if httpx.get(url + ready_path, timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.stop()
    raise RuntimeError(f"{name} not ready after {timeout}s:\n{proc.output()}")


class MockUpstream:
    """A mock provider process plus helpers to steer it and read what it received."""

    def __init__(self, proc: Proc, wire: str) -> None:
        self.proc = proc
        self.wire = wire
        self.url = proc.url
        self.port = int(proc.url.rsplit(":", 1)[1])

    def configure(self, **knobs: Any) -> None:
        response = httpx.post(f"{self.url}/_mock/config", json=knobs, timeout=5)
        response.raise_for_status()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_mock/reset", timeout=5).raise_for_status()
        self.configure(
            latency_ms=0,
            ttft_ms=0,
            tokens_per_s=0,
            output_tokens=16,
            error_rate=0,
            error_status=500,
            error_code="",
            retry_after_s=1,
            reset_rate=0,
            hang_rate=0,
            cut_after=0,
            prompt_cache=True,
            uncached_ms_per_1k_tokens=0,
            anthropic_min_cache_tokens=1024,
            ratelimit_remaining=-1,
            ratelimit_reset_s=1,
            seed=0,
        )

    def received(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = httpx.get(f"{self.url}/_mock/requests", timeout=5).json()[
            "requests"
        ]
        return data

    def count(self, path: str) -> int:
        counts: dict[str, int] = httpx.get(f"{self.url}/_mock/requests", timeout=5).json()["counts"]
        return counts.get(path, 0)


def mock_upstream(wire: str, tmp: Path) -> Iterator[MockUpstream]:
    port = free_port()
    proc = start_process(
        f"mock-{wire}-{port}",
        ["mock-provider", "--wire", wire, "--port", str(port)],
        f"http://127.0.0.1:{port}",
        "/health",
        tmp,
    )
    try:
        yield MockUpstream(proc, wire)
    finally:
        proc.stop()


def gateway_config(
    openai_port: int,
    anthropic_port: int,
    extra: str = "",
    timeouts: str = "{connect_ms: 1000, first_byte_ms: 1500, idle_ms: 1500, total_ms: 5000}",
) -> str:
    return (
        textwrap.dedent(f"""\
        server: {{max_body_bytes: 65536}}
        providers:
          primary:
            kind: openai
            api_base: http://127.0.0.1:{openai_port}/v1
            api_key: {OPENAI_UPSTREAM_KEY}
            timeouts: {timeouts}
          claude:
            kind: anthropic
            api_base: http://127.0.0.1:{anthropic_port}
            api_key: {ANTHROPIC_UPSTREAM_KEY}
            timeouts: {timeouts}
        routes:
          gpt-4o:
            targets:
              - {{provider: primary, model: gpt-4o}}
              - {{provider: claude, model: claude-sonnet-4-5}}
          only-primary:
            targets:
              - {{provider: primary, model: gpt-4o-mini}}
          claude-first:
            targets:
              - {{provider: claude, model: claude-sonnet-4-5}}
          text-embedding-3-small:
            targets:
              - {{provider: claude, model: claude-sonnet-4-5}}
              - {{provider: primary, model: text-embedding-3-small}}
          secret-route:
            targets:
              - {{provider: primary, model: gpt-4o}}
        keys:
          - {{name: tests, team: qa, key: "${{TEST_GATEWAY_KEY}}",
              routes: [gpt-4o, only-primary, claude-first, text-embedding-3-small]}}
          - {{name: other, team: ops, key_sha256: "{"a" * 64}"}}
          - {{name: admin, team: ops, key: "${{TEST_ADMIN_KEY}}", admin: true, routes: []}}
        """)
        + extra
    )


def start_gateway(config_text: str, tmp: Path, name: str = "gateway") -> Proc:
    port = free_port()
    config = tmp / f"{name}-{port}.yaml"
    config.write_text(config_text)
    return start_process(
        name,
        ["serve", "--config", str(config), "--port", str(port)],
        f"http://127.0.0.1:{port}",
        "/health/ready",
        tmp,
        env={"TEST_GATEWAY_KEY": GATEWAY_KEY, "TEST_ADMIN_KEY": ADMIN_KEY},
    )


def reset_routing(proc: Proc) -> None:
    """Close breakers and end cool-downs left by earlier tests."""
    httpx.post(
        proc.url + "/admin/targets/reset",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=5,
    ).raise_for_status()


def counts(upstream: MockUpstream) -> dict[str, int]:
    data: dict[str, int] = httpx.get(f"{upstream.url}/_mock/requests", timeout=5).json()["counts"]
    return data


def failover_config(
    openai_port: int, anthropic_port: int, route_extra: str = "", state: str = ""
) -> str:
    """A gateway with one failover route whose policies the test sets."""
    return (
        textwrap.dedent(f"""\
        {state}
        providers:
          primary:
            kind: openai
            api_base: http://127.0.0.1:{openai_port}/v1
            timeouts: {{connect_ms: 1000, first_byte_ms: 5000, idle_ms: 5000, total_ms: 5000}}
          claude:
            kind: anthropic
            api_base: http://127.0.0.1:{anthropic_port}
        routes:
          chat:
            targets:
              - {{provider: primary, model: gpt-4o}}
              - {{provider: claude, model: claude-sonnet-4-5}}
        """)
        + textwrap.indent(textwrap.dedent(route_extra), "    ")
        + textwrap.dedent("""\
        keys:
          - {name: tests, key: "${TEST_GATEWAY_KEY}"}
          - {name: admin, key: "${TEST_ADMIN_KEY}", admin: true}
        """)
    )
