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
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.processes import GATEWAY_KEY, ROOT, MockUpstream, start_gateway

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
