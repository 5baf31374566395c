"""Helpers for the pool's tests: simulated replicas as real processes, reading a replica's
`/metrics`, and a gateway config with a pool behind a hosted target."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import httpx

from fallback_engine.scrape import Snapshot, parse
from tests.support.processes import Proc, free_port, start_process


class Replica:
    """A replica process (simulated, or real vLLM under `spillover pool launch`)."""

    def __init__(self, proc: Proc | None, url: str | None = None) -> None:
        self.proc = proc
        self.url = url or (proc.url if proc else "")

    def metrics(self) -> Snapshot:
        return parse(httpx.get(self.url + "/metrics", timeout=5).text, at=0.0)

    def completed(self) -> int:
        """Requests the replica finished (warm-up included), from vLLM's own e2e histogram."""
        return int(self.metrics().histograms.get("e2e", (0.0, 0.0))[1])

    def configure(self, **knobs: object) -> None:
        httpx.post(self.url + "/_sim/config", json=knobs, timeout=5).raise_for_status()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def metric(proc: Proc, name: str, **labels: str) -> float:
    text = httpx.get(proc.url + "/metrics", timeout=5).text
    for line in text.splitlines():
        named = line.startswith(name + "{") or line.startswith(name + " ")
        if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_ready(proc: Proc, replica: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if metric(proc, "spillover_pool_replica_state", replica=replica, state="ready") == 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"{replica} not ready after {timeout} s")


def start_sim(logs: Path, name: str, *flags: str) -> Replica:
    port = free_port()
    proc = start_process(
        name,
        ["sim-vllm", "--port", str(port), "--model", "tiny-llama", *flags],
        f"http://127.0.0.1:{port}",
        "/metrics",  # answers while the model still "loads"
        logs,
    )
    return Replica(proc)


def pool_config(
    hosted_port: int,
    replicas: list[str],
    pool_extra: str = "",
    route_extra: str = "",
    ledger: str = "",
    hosted_first: bool = True,
) -> str:
    urls = ", ".join(f'"{u}"' for u in replicas)
    targets = ["{provider: hosted, model: gpt-4o}", "{provider: local, model: tiny-llama}"]
    if not hosted_first:
        targets = targets[1:]
    pool = textwrap.indent(textwrap.dedent(pool_extra), " " * 4)
    return (
        textwrap.dedent(f"""\
        {ledger}
        providers:
          hosted:
            kind: openai
            api_base: http://127.0.0.1:{hosted_port}/v1
            timeouts: {{connect_ms: 500, first_byte_ms: 3000, idle_ms: 3000, total_ms: 5000}}
          local:
            kind: vllm_pool
            model: tiny-llama
            replicas: [{urls}]
            gpu_cost_per_hour: 3.5
            tokens_per_replica_hour: 7000000
            health: {{every_s: 0.2, timeout_s: 1, unhealthy_after: 1}}
            scrape: {{every_s: 0.2}}
        """)
        + pool
        + textwrap.dedent(f"""\
        routes:
          chat:
            targets: [{", ".join(targets)}]
            retry: {{max_attempts: 4, backoff_base_ms: 20, backoff_cap_ms: 100}}
        """)
        + textwrap.indent(textwrap.dedent(route_extra), " " * 4)
        + textwrap.dedent("""\
        keys:
          - {name: tests, team: qa, key: "${TEST_GATEWAY_KEY}"}
          - {name: batch, team: qa, key: sk-batch-jobs, priority: sheddable}
          - {name: budgeted, team: finance, key: sk-budgeted, budget: {daily_usd: 0.01}}
          - {name: admin, key: "${TEST_ADMIN_KEY}", admin: true, routes: []}
        """)
    )
