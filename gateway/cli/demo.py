"""`spillover demo`: mock providers, a simulated pool and the gateway, on embedded defaults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console

from gateway.cli.common import console, demo_config_path


def demo(
    port: Annotated[int, typer.Option(envvar="SPILLOVER_PORT", help="The gateway's port.")] = 4000,
    host: Annotated[
        str,
        typer.Option(
            envvar="SPILLOVER_HOST",
            help="The gateway's address: 0.0.0.0 in a container, to publish its port.",
        ),
    ] = "127.0.0.1",
    openai_port: int = 9001,
    anthropic_port: int = 9002,
    pool_port: Annotated[int, typer.Option(help="The first of two sim-vllm replicas.")] = 9003,
) -> None:
    """The embedded demo: two mock upstreams, a simulated vLLM pool and the gateway on
    config/demo.yaml."""
    from gateway.cli.probe import wait_ready

    env = {
        **os.environ,
        "SPILLOVER_PORT": str(port),
        "SPILLOVER_HOST": host,
        "MOCK_OPENAI_PORT": str(openai_port),
        "MOCK_ANTHROPIC_PORT": str(anthropic_port),
        "SIM_VLLM_PORT": str(pool_port),
        "SIM_VLLM_PORT_2": str(pool_port + 1),
    }
    children = [
        subprocess.Popen(c, env=env) for c in _commands(openai_port, anthropic_port, pool_port)
    ]
    stop = _stopper(children)
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # a wildcard bind: use loopback
    base = f"http://{local}:{port}"
    if not wait_ready(
        f"{base}/health/ready", 30, alive=lambda: all(c.poll() is None for c in children)
    ):
        stop()
        console.print(
            "[red]the demo did not come up: a process exited or 30 s passed "
            "(is a port taken?)[/red]"
        )
        raise typer.Exit(1)
    key = os.environ.get("SPILLOVER_DEMO_KEY", "sk-spillover-demo")
    Console(soft_wrap=True).print(
        _WELCOME.format(base=base, key=key, openai_port=openai_port), highlight=False
    )
    sys.stdout.flush()
    try:
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        console.print("[red]a demo process exited; stopping the rest[/red]")
    except KeyboardInterrupt:
        pass
    finally:
        stop()


_SIM_ARGS = ["--model", "llama-3.1-8b", "--step-base-ms", "10"]


def _commands(openai_port: int, anthropic_port: int, pool_port: int) -> list[list[str]]:
    me = [sys.executable, "-m", "gateway"]
    mock = [*me, "mock-provider", "--tokens-per-s", "200", "--port"]
    return [
        [*mock, str(openai_port), "--wire", "openai"],
        [*mock, str(anthropic_port), "--wire", "anthropic"],
        [*me, "sim-vllm", "--port", str(pool_port), "--replicas", "2", *_SIM_ARGS],
        [*me, "serve", "--config", str(demo_config_path()), "--log-level", "warning"],
    ]


def _stopper(children: list[subprocess.Popen[bytes]]) -> Callable[[], None]:
    """Stop every child (TERM, then KILL after 10 s), also on SIGTERM and Ctrl-C."""

    def stop(*_: object) -> None:
        for child in children:
            if child.poll() is None:
                child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()

    def on_term(*_: object) -> None:
        stop()
        sys.exit(0)

    # Installed explicitly: a parent that ignores SIGINT would otherwise make Ctrl-C a no-op.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    return stop


_WELCOME = """
[bold green]Spillover demo is up.[/bold green]
base URL: [bold]{base}/v1[/bold]   key: [bold]{key}[/bold]
routes: gpt-4o (mock OpenAI, then mock Anthropic, then the simulated vLLM pool; also gpt-*),
        llama-3.1-8b (the pool first), claude-sonnet-4-5 (also claude-*), text-embedding-3-small

  curl {base}/v1/chat/completions -H 'Authorization: Bearer {key}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"model": "gpt-4o", "messages": [{{"role": "user", "content": "hi"}}]}}'

  from openai import OpenAI
  client = OpenAI(base_url="{base}/v1", api_key="{key}")
  print(client.chat.completions.create(model="gpt-4o",
        messages=[{{"role": "user", "content": "hi"}}]).choices[0].message.content)

  Make the primary fail and watch the fallback answer (x-spillover-provider: claude):
  curl -X POST http://127.0.0.1:{openai_port}/_mock/config \\
       -d '{{"error_rate": 1, "error_status": 503}}'

  Coding agents: ANTHROPIC_BASE_URL={base} ANTHROPIC_API_KEY={key} claude
  (Claude Code), or Codex with base_url = "{base}/v1" (docs/agents/).

console: {base}/ui (sign in with the admin key sk-spillover-admin)
metrics: {base}/metrics   readiness: {base}/health/ready   Ctrl-C stops everything.
"""
