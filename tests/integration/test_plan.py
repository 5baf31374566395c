"""`spillover plan` on a ledger filled through the gateway: the request-size percentiles it
reports are the sizes the clients asked for, concurrent requests show up as concurrency and
KV tokens in flight, and a pool is sized from the p99, not the average."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.processes import GATEWAY_KEY, ROOT, MockUpstream, start_gateway
from tests.support.synthetic_ledger import business_hours_ledger

pytestmark = pytest.mark.e2e


def test_plan_sizes_the_pool_from_the_ledger(
    openai_upstream: MockUpstream, tmp_path: Path, logs_dir: Path
) -> None:
    db = tmp_path / "ledger.sqlite"
    config_text = textwrap.dedent(f"""\
        ledger: {{url: "sqlite:///{db}", flush_ms: 20, spool_path: "{tmp_path}/spool"}}
        providers:
          primary: {{kind: openai, api_base: "http://127.0.0.1:{openai_upstream.port}/v1"}}
          local: {{kind: vllm_pool, model: llama, replicas: ["http://127.0.0.1:9"],
                   gpu_cost_per_hour: 2.5, admission: {{max_kv_usage: 0.8}}}}
        routes:
          chat: {{targets: [{{provider: primary, model: gpt-4o}}]}}
        keys:
          - {{name: tests, team: qa, key: "${{TEST_GATEWAY_KEY}}"}}
        """)
    config = tmp_path / "spillover.yaml"
    config.write_text(config_text)
    # Answers as long as asked for, the long ones slow enough to overlap each other.
    openai_upstream.configure(output_tokens=1_000, tokens_per_s=400)
    proc = start_gateway(config_text, logs_dir, name="plan")
    client = openai.OpenAI(base_url=proc.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)

    def ask(max_tokens: int) -> None:
        stream = client.chat.completions.create(
            model="chat", max_tokens=max_tokens, stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "plan the capacity"}],
        )  # fmt: skip
        assert list(stream)[-1].usage is not None

    try:
        for _ in range(36):
            ask(4)
        with ThreadPoolExecutor(4) as pool:  # four long answers at once
            list(pool.map(ask, [200] * 4))
        time.sleep(0.3)
    finally:
        proc.stop()

    def plan(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "plan", "--config", str(config), *args],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
            env={"TEST_GATEWAY_KEY": "x", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    report: dict[str, Any] = json.loads(
        plan("--format", "json", "--pool", "local", "--kv-tokens-per-replica", "600")
    )
    need = report["demand"]
    assert need["requests"] == 40
    assert need["output_tokens"]["p50"] == 4 and need["output_tokens"]["p95"] == 200
    assert need["concurrency"]["max"] == 4  # the four long ones overlapped
    long_request = need["request_tokens"]["max"]
    assert need["kv_tokens"]["max"] == 4 * long_request
    sizing = report["sizing"]
    # 600 tokens per replica, 80% usable (the pool's max_kv_usage): 480.
    assert sizing["kv_bound_replicas"] == math.ceil(need["kv_tokens"]["p99"] / 480)
    assert sizing["replicas"] >= sizing["kv_bound_replicas"] >= 2
    assert sizing["by_averages_replicas"] < sizing["kv_bound_replicas"]
    assert sizing["usd_per_hour"] == pytest.approx(2.5 * sizing["replicas"])
    table = plan("--pool", "local", "--kv-tokens-per-replica", "600")
    assert "KV tokens in flight" in table and "recommended" in table
    assert "no served requests" in plan("--route", "nope")


def test_plan_schedule_forecasts_a_weekly_pattern_and_plans_each_hour(tmp_path: Path) -> None:
    """A synthetic ledger of fifteen days ending now: weekdays 09:00-17:00 UTC busy (twenty
    10,000-token requests in flight), the rest quiet (two). `spillover plan --schedule`
    forecasts the next day and plans A10s at night and at the peak the cheaper of A10s and
    H100s, beside a flat plan; its money adds up to the slot."""
    db = tmp_path / "ledger.sqlite"
    business_hours_ledger(db, days=15)
    config = tmp_path / "spillover.yaml"
    config.write_text(_schedule_config(db))
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "plan", "-c", str(config), "--schedule", "--pool",
         "local", "--since", "15d", "--format", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    slots = result["slots"]
    assert len(slots) == 24 * 12
    assert result["held_out_error"] is not None and result["held_out_error"] < 0.15

    def busy(slot: dict[str, Any]) -> bool:
        """A busy hour, or the hour it ends into (its first minute still holds the busy
        requests, and an hour is planned for its peak slot)."""
        at = time.gmtime(slot["start"])
        return at.tm_wday < 5 and 9 <= at.tm_hour <= 17

    # Quiet: 2 in flight x 10,000 = 20,000 KV tokens x 1.2 → one A10 (45,000 usable).
    quiet = {(s["gpu"], s["replicas"]) for s in slots if not busy(s)}
    assert quiet == {("a10", 1)}
    # Busy (if tomorrow is a weekday): 20-21 in flight x 10,000 = 210,000 x 1.2 → 6-7 A10s
    # ($7.20-8.40/h) rather than one H100 ($9/h).
    peak = {(s["gpu"], s["replicas"]) for s in slots if busy(s)}
    if peak:
        assert {gpu for gpu, _ in peak} == {"a10"} and max(n for _, n in peak) in (6, 7)
    prices = {"a10": Fraction("1.2"), "h100": Fraction("9.0")}
    exact = sum(prices[s["gpu"]] * s["replicas"] * 1_000_000 / 12 for s in slots)
    assert result["cost_micro_usd"] == round(exact)
    assert result["cost_micro_usd"] <= result["flat_cost_micro_usd"]


def _schedule_config(db: Path, refresh_s: float = 300) -> str:
    return textwrap.dedent(f"""\
        ledger: {{url: "sqlite:///{db}"}}
        providers:
          local:
            kind: vllm_pool
            model: llama
            replicas: ["http://127.0.0.1:9"]
            admission: {{max_kv_usage: 0.9}}
            capacity:
              model_memory_gb: 16
              headroom: 0.2
              refresh_s: {refresh_s}
              gpus:
                a10: {{usd_per_hour: 1.2, memory_gb: 24, kv_tokens_per_replica: 50000,
                       tokens_per_s: 100000, lead_time_s: 600}}
                h100: {{usd_per_hour: 9.0, memory_gb: 80, kv_tokens_per_replica: 600000,
                        tokens_per_s: 1000000, lead_time_s: 480}}
        routes:
          chat: {{targets: [{{provider: local, model: llama}}]}}
        keys:
          - {{name: tests, key: sk-plan}}
        """)


def test_the_gateway_exports_what_the_pool_should_run_one_lead_time_ahead(
    tmp_path: Path, logs_dir: Path
) -> None:
    """`spillover_pool_desired_replicas` for now + the longest lead time equals the
    schedule's choice for that slot, and the forecast is beside it."""
    db = tmp_path / "ledger.sqlite"
    business_hours_ledger(db, days=15)
    proc = start_gateway(_schedule_config(db, refresh_s=1), logs_dir, name="pool-forecast")
    try:
        deadline = time.monotonic() + 60
        desired: dict[tuple[str, str], float] = {}
        while not any(desired.values()) and time.monotonic() < deadline:
            time.sleep(0.5)
            for line in httpx.get(proc.url + "/metrics", timeout=5).text.splitlines():
                if line.startswith("spillover_pool_desired_replicas{"):
                    labels, value = line.rsplit(" ", 1)
                    gpu = labels.split('gpu="')[1].split('"')[0]
                    why = labels.split('reason="')[1].split('"')[0]
                    desired[(gpu, why)] = float(value)
        running = {k: v for k, v in desired.items() if v}
        assert len(running) == 1, desired
        (gpu, why), replicas = next(iter(running.items()))
        assert gpu == "a10" and why in ("forecast", "warm_floor")
        config = tmp_path / "spillover.yaml"
        config.write_text(_schedule_config(db))
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "plan", "-c", str(config), "--schedule", "--pool",
             "local", "--since", "15d", "--format", "json"],
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        ahead = (int(time.time() + 600) // 300) * 300
        slot = next(s for s in json.loads(done.stdout)["slots"] if s["start"] == ahead)
        assert (slot["gpu"], slot["replicas"]) == (gpu, replicas)
        forecast = httpx.get(proc.url + "/metrics", timeout=5).text
        assert 'spillover_pool_forecast{pool="local",what="kv_tokens"}' in forecast
        # The same weeks again and again: the last day, held out, is what the forecast said.
        error = [
            float(line.rsplit(" ", 1)[1])
            for line in forecast.splitlines()
            if line.startswith('spillover_pool_forecast_error_ratio{pool="local"}')
        ]
        assert error and error[0] < 0.1, error
    finally:
        proc.stop()
