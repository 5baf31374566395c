"""`spillover pool launch` with `launch.scale: schedule`, rehearsing a day at 1200x: the ledger
says the pool is busy 09:00-11:00 every day; with a two-hour lead time the supervisor starts
the second replica at 07:00, it is listed (up and warm) well before 09:00 and carries users'
requests through the ramp, and once the ramp's hours are over it is drained and stopped — while a client sends
requests all along, every one answered, none by a cold replica, the third URL never started."""

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
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.pool import Replica, wait_ready
from tests.support.processes import GATEWAY_KEY, ROOT, free_port, start_gateway
from tests.support.synthetic_ledger import shaped_ledger

pytestmark = pytest.mark.e2e

SCALE = 1200  # a real second is twenty minutes of the schedule
WARMUP_MS = 1500  # a cold replica's first request pays this


def _config(tmp: Path, db: Path, urls: list[str], vllm: Path) -> str:
    return textwrap.dedent(f"""\
        ledger: {{url: "sqlite:///{db}", flush_ms: 20, spool_path: "{tmp}/spool"}}
        providers:
          local:
            kind: vllm_pool
            model: tiny-llama
            discover: {{file: "{tmp}/replicas.json", every_s: 0.2}}
            health: {{every_s: 0.2, timeout_s: 1, unhealthy_after: 1}}
            scrape: {{every_s: 0.2}}
            routing: {{strategy: round_robin}}
            warm_up: {{timeout_s: 10}}
            capacity:
              model_memory_gb: 10
              refresh_s: 600
              history_days: 8
              gpus:
                cpu: {{usd_per_hour: 1.0, memory_gb: 24, kv_tokens_per_replica: 180000,
                       tokens_per_s: 100000, lead_time_s: 7200}}
            launch:
              vllm: "{vllm}"
              model_path: /models/none
              replicas: {json.dumps(urls)}
              scale: schedule
              drain_timeout_s: 10
              env: {{FAKE_VLLM_LOAD_S: "0.5", FAKE_VLLM_WARMUP_MS: "{WARMUP_MS}"}}
        routes:
          chat: {{targets: [{{provider: local, model: tiny-llama}}]}}
        keys:
          - {{name: tests, key: "${{TEST_GATEWAY_KEY}}"}}
        """)


class Traffic:
    """Users' requests from two threads until stopped: each one's status and latency."""

    def __init__(self, url: str) -> None:
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
            time.sleep(0.02)

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


def test_the_supervisor_starts_a_replica_before_the_ramp_and_drains_it_after(
    tmp_path: Path, logs_dir: Path
) -> None:
    day = (int(time.time()) // 86_400 - 1) * 86_400  # yesterday, 00:00 UTC
    rehearse_from = day + 6 * 3600
    db = tmp_path / "ledger.sqlite"
    shaped_ledger(
        db, rehearse_from - 9 * 86_400, rehearse_from, lambda t: 9 <= t.tm_hour < 11, "local"
    )
    vllm = tmp_path / "vllm"
    vllm.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{ROOT}/tests/support/fake_vllm.py" "$@"\n'
    )
    vllm.chmod(0o755)
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    config_text = _config(tmp_path, db, urls, vllm)
    config = tmp_path / "spillover.yaml"
    config.write_text(config_text)
    out = (logs_dir / "pool-launch.log").open("w+")
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(rehearse_from))
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "gateway", "pool", "launch", "-c", str(config), "--run-dir",
         str(tmp_path / "run"), "--rehearse-from", start, "--time-scale", str(SCALE)],
        cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        env={**os.environ, "TEST_GATEWAY_KEY": GATEWAY_KEY},
    )  # fmt: skip
    gateway = None
    try:
        gateway = start_gateway(config_text, logs_dir, name="autoscale-gateway")
        wait_ready(gateway, urls[0], timeout=30)  # the warm floor serves from the start
        second = Replica(None, urls[1])
        seen: list[int] = []
        sampling = threading.Event()
        sampler = threading.Thread(target=_served, args=(second, seen, sampling))
        sampler.start()
        with Traffic(gateway.url) as traffic:
            deadline = time.monotonic() + 60
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
        supervisor.wait(30)
        if gateway is not None:
            gateway.stop()
    log = Path(out.name).read_text()
    events = _events(log)

    # Up one lead time ahead of the ramp: started at 07:00, listed (up, warm) before 09:00.
    assert events["starting " + urls[0]] <= "06:05", log  # the warm floor, at once
    assert "07:00" <= events["starting " + urls[1]] <= "07:05", log
    assert events["listed " + urls[1]] < "09:00", log
    # Down after it: drained once the forecast no longer needs it, then stopped. The profile
    # is hourly, each hour provisioned for its busiest five minutes: the 11:00 hour still
    # holds the ramp's last requests, so the forecast lets it go at 12:00.
    assert "12:00" <= events["draining " + urls[1]] <= "12:10", log
    assert "stopped vllm on " + urls[1] in log
    assert "starting " + urls[2] not in events  # two replicas hold the peak; three never ran
    # It carried users' requests through the ramp (more than the two warm-ups).
    assert max(seen, default=0) > 10, seen
    # Every request answered, none by a cold replica (which would have taken WARMUP_MS).
    outcomes = [o for o, _ in traffic.results]
    assert len(outcomes) > 50 and set(outcomes) == {"ok"}, set(outcomes)
    assert max(latency for _, latency in traffic.results) < WARMUP_MS / 1000 * 0.7
    # It left the gateway's rotation by draining, never by failing.
    second_series = [m for m in metrics.splitlines() if f'replica="{urls[1]}"' in m]
    drained = [m for m in second_series if "transitions_total" in m and 'state="draining"' in m]
    failed = [m for m in second_series if "transitions_total" in m and 'state="unhealthy"' in m]
    assert drained and float(drained[0].rsplit(" ", 1)[1]) == 1, second_series
    assert not failed or float(failed[0].rsplit(" ", 1)[1]) == 0, second_series
    assert json.loads((tmp_path / "replicas.json").read_text()) == {"replicas": []}
