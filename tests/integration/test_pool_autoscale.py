"""`spillover pool launch` with `launch.scale: schedule`, rehearsing a day fast: the ledger says
the pool is busy 09:00-11:00 every day; one lead time before 09:00 the supervisor starts the
second replica, it is listed (up and warm) before the ramp and carries users' requests
through it, and once the ramp's hours are over it is drained and stopped — while a client
sends requests all along, every one answered, the third URL never started. On simulated
replicas with a slow first request (none meets a cold replica) at 1200x, and on real
`vllm serve` at 240x."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.pool import Replica, wait_ready
from tests.support.processes import GATEWAY_KEY, ROOT, free_port, start_gateway
from tests.support.synthetic_ledger import shaped_ledger
from tests.support.vllm import MODEL, VLLM, require_vllm

pytestmark = pytest.mark.e2e

WARMUP_MS = 1500  # a simulated replica's first request pays this


@dataclass(frozen=True)
class Flavor:
    name: str
    scale: int  # schedule seconds per real second
    lead_hours: int  # a replica is ordered this long before the traffic needs it
    launch: str  # the launch section's own lines
    pause_s: float  # between one user's requests

    def at(self, hour: float) -> str:
        """HH:MM of the schedule, `hour` hours after 09:00 (the ramp)."""
        minutes = round((9 + hour) * 60)
        return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _flavor(name: str, tmp: Path) -> Flavor:
    if name == "sim":
        vllm = tmp / "vllm"
        script = f'exec "{sys.executable}" "{ROOT}/tests/support/fake_vllm.py" "$@"'
        vllm.write_text(f"#!/bin/sh\n{script}\n")
        vllm.chmod(0o755)
        env = f'{{FAKE_VLLM_LOAD_S: "0.5", FAKE_VLLM_WARMUP_MS: "{WARMUP_MS}"}}'
        return Flavor(name, 1200, 2, f'vllm: "{vllm}"\nmodel_path: /models/none\nenv: {env}', 0.02)
    require_vllm()
    launch = (
        f'vllm: "{VLLM}"\nmodel_path: "{MODEL}"\nkv_blocks: 24\nstart_timeout_s: 240\n'
        "extra_args: [--enforce-eager, --distributed-executor-backend, uni]\n"
        'env: {VLLM_TARGET_DEVICE: cpu, VLLM_CPU_KVCACHE_SPACE: "1", '
        'VLLM_ENABLE_V1_MULTIPROCESSING: "0"}'
    )
    return Flavor(name, 240, 4, launch, 0.25)


def _config(tmp: Path, db: Path, urls: list[str], flavor: Flavor) -> str:
    launch = textwrap.indent(flavor.launch, " " * 6)
    return (
        textwrap.dedent(f"""\
        ledger: {{url: "sqlite:///{db}", flush_ms: 20, spool_path: "{tmp}/spool"}}
        providers:
          local:
            kind: vllm_pool
            model: tiny-llama
            discover: {{file: "{tmp}/replicas.json", every_s: 0.2}}
            health: {{every_s: 0.2, timeout_s: 2, unhealthy_after: 2}}
            scrape: {{every_s: 0.2}}
            routing: {{strategy: round_robin}}
            warm_up: {{timeout_s: 60}}
            timeouts: {{connect_ms: 2000, first_byte_ms: 20000, idle_ms: 20000, total_ms: 60000}}
            capacity:
              model_memory_gb: 10
              refresh_s: 600
              history_days: 8
              gpus:
                cpu: {{usd_per_hour: 1.0, memory_gb: 24, kv_tokens_per_replica: 180000,
                       tokens_per_s: 100000, lead_time_s: {flavor.lead_hours * 3600}}}
            launch:
              replicas: {json.dumps(urls)}
              scale: schedule
              drain_timeout_s: 30
        """)
        + launch
        + textwrap.dedent("""
        routes:
          chat: {targets: [{provider: local, model: tiny-llama}]}
        keys:
          - {name: tests, key: "${TEST_GATEWAY_KEY}"}
        """)
    )


class Traffic:
    """Users' requests from two threads until stopped: each one's status and latency."""

    def __init__(self, url: str, pause_s: float) -> None:
        self.pause_s = pause_s
        self.client = openai.OpenAI(base_url=url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
        self.results: list[tuple[str, float]] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run) for _ in range(2)]

    def _run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                self.client.chat.completions.create(
                    model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=4
                )
                outcome = "ok"
            except openai.APIError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            self.results.append((outcome, time.monotonic() - started))
            time.sleep(self.pause_s)

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(10)


def _served(replica: Replica, seen: list[int], stopping: threading.Event) -> None:
    """The most requests the replica had finished while it ran (warm-ups included)."""
    while not stopping.is_set():
        with contextlib.suppress(httpx.HTTPError):
            seen.append(replica.completed())
        time.sleep(0.1)


def _events(log: str) -> dict[str, str]:
    """'starting URL' / 'listed URL' / 'draining URL' / 'unlisted URL' → the schedule's HH:MM
    (the first time each happened)."""
    out: dict[str, str] = {}
    for when, what in re.findall(r"\[\w{3} (\d\d:\d\d)\] pool local: (?:.*: )?(\w+ http\S+)", log):
        out.setdefault(what, when)
    return out


@pytest.mark.parametrize("flavor_name", ["sim", "vllm"])
def test_the_supervisor_starts_a_replica_before_the_ramp_and_drains_it_after(
    flavor_name: str, tmp_path: Path, logs_dir: Path
) -> None:
    flavor = _flavor(flavor_name, tmp_path)
    day = (int(time.time()) // 86_400 - 1) * 86_400  # yesterday, 00:00 UTC
    rehearse_from = day + (9 - flavor.lead_hours - 1) * 3600  # an hour before it must act
    db = tmp_path / "ledger.sqlite"
    shaped_ledger(
        db, rehearse_from - 9 * 86_400, rehearse_from, lambda t: 9 <= t.tm_hour < 11, "local"
    )
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    config_text = _config(tmp_path, db, urls, flavor)
    config = tmp_path / "spillover.yaml"
    config.write_text(config_text)
    out = (logs_dir / f"pool-launch-{flavor.name}.log").open("w+")
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rehearse_from))
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "gateway", "pool", "launch", "-c", str(config), "--run-dir",
         str(tmp_path / "run"), "--rehearse-from", start, "--time-scale", str(flavor.scale)],
        cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        env={**os.environ, "TEST_GATEWAY_KEY": GATEWAY_KEY},
    )  # fmt: skip
    gateway = None
    try:
        gateway = start_gateway(config_text, logs_dir, name=f"autoscale-{flavor.name}")
        wait_ready(gateway, urls[0], timeout=240)  # the warm floor serves from the start
        second = Replica(None, urls[1])
        seen: list[int] = []
        sampling = threading.Event()
        sampler = threading.Thread(target=_served, args=(second, seen, sampling))
        sampler.start()
        with Traffic(gateway.url, flavor.pause_s) as traffic:
            deadline = time.monotonic() + 300
            while "unlisted " + urls[1] not in _events(Path(out.name).read_text()):
                assert time.monotonic() < deadline, Path(out.name).read_text()
                assert supervisor.poll() is None, Path(out.name).read_text()
                time.sleep(0.2)
            time.sleep(2)  # the drain, and requests after it
        sampling.set()
        sampler.join(10)
        metrics = httpx.get(gateway.url + "/metrics", timeout=5).text
    finally:
        supervisor.send_signal(signal.SIGINT)
        supervisor.wait(60)
        if gateway is not None:
            gateway.stop()
    log = Path(out.name).read_text()
    events = _events(log)

    # Up one lead time ahead of the ramp, listed (up, warm) before it.
    assert events["starting " + urls[0]] <= flavor.at(-flavor.lead_hours - 1 + 0.1), log
    ordered = events["starting " + urls[1]]
    assert flavor.at(-flavor.lead_hours) <= ordered <= flavor.at(-flavor.lead_hours + 0.1), log
    assert events["listed " + urls[1]] < flavor.at(0), log
    # Down after it: drained once the forecast no longer needs it, then stopped. The profile
    # is hourly, each hour provisioned for its busiest five minutes: the 11:00 hour still
    # holds the ramp's last requests, so the forecast lets it go at 12:00.
    assert flavor.at(3) <= events["draining " + urls[1]] <= flavor.at(3.2), log
    assert "stopped vllm on " + urls[1] in log
    assert "starting " + urls[2] not in events  # two replicas hold the peak; three never ran
    # It carried users' requests through the ramp (more than the two warm-ups).
    assert max(seen, default=0) > 10, seen
    # Every request answered.
    outcomes = [o for o, _ in traffic.results]
    assert len(outcomes) > 50 and set(outcomes) == {"ok"}, set(outcomes)
    if flavor.name == "sim":  # none by a cold replica (which would have taken WARMUP_MS)
        assert max(latency for _, latency in traffic.results) < WARMUP_MS / 1000 * 0.7
    # It left the gateway's rotation by draining, never by failing.
    second_series = [m for m in metrics.splitlines() if f'replica="{urls[1]}"' in m]
    drained = [m for m in second_series if "transitions_total" in m and 'state="draining"' in m]
    failed = [m for m in second_series if "transitions_total" in m and 'state="unhealthy"' in m]
    assert drained and float(drained[0].rsplit(" ", 1)[1]) == 1, second_series
    assert not failed or float(failed[0].rsplit(" ", 1)[1]) == 0, second_series
    assert json.loads((tmp_path / "replicas.json").read_text()) == {"replicas": []}
