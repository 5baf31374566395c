"""The response cache on workloads with repeats, side by side with no cache, in one run.

    .venv/bin/python bench/response_cache.py

Two recorded-style workloads, replayed through one gateway against the mock OpenAI provider
(400 ms per answer, 64 output tokens: a small model's answer), once on a route without a
cache and once on the same route with one — and the first thirty requests straight to the
mock, no gateway, for the time of a direct upstream call:

- an evaluation suite run twice: 60 distinct questions (temperature 0), the suite asked
  twice in a row, as a prompt change that is rolled back, or a CI retry, does;
- an agent test suite in CI: 12 three-turn conversations with tools, the whole suite run
  three times (the retried pipeline), each run streaming every turn like a coding agent.

Reported per workload and mode: requests, the cache's hit ratio, the dollars paid and the
dollars the cache saved (the ledger's own figures: `cost_micro_usd`,
`cache_saved_micro_usd`), the latency of a hit and of a miss beside the same requests with no
cache (p50, p95, through the gateway, all in the same run), and what a miss adds. A last row:
a team asks 20 questions another team asked, and 20 nobody asked — both miss, in the same
time (the key holds the tenant: nothing is found either way).
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from pool_procs import free_port, spawn, stop, wait  # noqa: E402

KEYS = {"evals": "sk-bench-evals", "agents": "sk-bench-agents", "other": "sk-bench-other"}


def _config(port: int, upstream: int, ledger: Path) -> str:
    return textwrap.dedent(f"""\
        server: {{port: {port}, access_log: false}}
        ledger: {{url: "sqlite:///{ledger}"}}
        providers:
          openai: {{kind: openai, api_base: "http://127.0.0.1:{upstream}/v1", api_key: sk-up}}
        routes:
          plain: {{targets: [{{provider: openai, model: gpt-4o}}]}}
          cached:
            targets: [{{provider: openai, model: gpt-4o}}]
            cache: {{enabled: true, ttl_s: 3600, sampled: true}}
        keys:
          - {{name: evals, team: evals, key: {KEYS["evals"]}}}
          - {{name: agents, team: agents, key: {KEYS["agents"]}}}
          - {{name: other, team: other, key: {KEYS["other"]}}}
        """)


def _eval_suite() -> list[dict[str, Any]]:
    questions = [
        {"messages": [{"role": "user", "content": f"Eval item {i}: what is {i} squared?"}],
         "temperature": 0, "max_tokens": 64}
        for i in range(60)
    ]  # fmt: skip
    return questions * 2


def _agent_suite() -> list[dict[str, Any]]:
    tools = [
        {"type": "function", "function": {"name": n, "description": f"{n} a file",
                                          "parameters": {"type": "object"}}}
        for n in ("read", "write", "grep")
    ]  # fmt: skip
    run = []
    for test in range(12):
        history: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a coding agent under test."},
        ]
        for turn in range(3):
            history = [*history, {"role": "user", "content": f"test {test}, step {turn}"}]
            run.append({"messages": history, "tools": tools, "stream": True, "max_tokens": 64})
            history = [*history, {"role": "assistant", "content": f"done step {turn}"}]
    return run * 3


async def _one(
    client: httpx.AsyncClient, url: str, key: str, route: str, body: dict[str, Any]
) -> tuple[float, str, str]:
    """Seconds, `x-spillover-cache` (or "-") and our request id."""
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {key}"}
    async with client.stream(
        "POST", url + "/v1/chat/completions", json={**body, "model": route}, headers=headers
    ) as answer:
        async for _ in answer.aiter_bytes():
            pass
        assert answer.status_code == 200, answer.status_code
        return (
            time.perf_counter() - started,
            answer.headers.get("x-spillover-cache", "-"),
            answer.headers.get("x-request-id", ""),
        )


async def _replay(url: str, key: str, route: str, work: list[dict[str, Any]]) -> list[Any]:
    async with httpx.AsyncClient(timeout=60) as client:
        return [await _one(client, url, key, route, body) for body in work]


def _money(ledger: Path, ids: list[str]) -> tuple[float, float]:
    """Dollars paid and saved by these requests, from the ledger (polled until all there)."""
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(ledger) as db:
            marks = ",".join("?" * len(ids))
            paid, saved, found = db.execute(
                f"SELECT SUM(cost_micro_usd), SUM(cache_saved_micro_usd), COUNT(*) "
                f"FROM spillover_ledger WHERE request_id IN ({marks})",
                ids,
            ).fetchone()
        if found == len(ids) or time.monotonic() > deadline:
            return (paid or 0) / 1e6, (saved or 0) / 1e6
        time.sleep(0.2)


def _ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.1f}"


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="spillover-response-cache-bench-"))
    me = [str(ROOT / ".venv/bin/spillover")]
    upstream, port = free_port(), free_port()
    ledger = folder / "ledger.sqlite"
    (folder / "gateway.yaml").write_text(_config(port, upstream, ledger))
    procs = [spawn([*me, "mock-provider", "--port", str(upstream), "--latency-ms", "400",
                    "--ttft-ms", "400", "--output-tokens", "64"], folder / "mock.log")]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    upstream_url = f"http://127.0.0.1:{upstream}"
    lines = []
    try:
        wait(f"http://127.0.0.1:{upstream}", "/health", 30)
        procs.append(spawn([*me, "serve", "--config", str(folder / "gateway.yaml"),
                            "--workers", "1"], folder / "gateway.log"))  # fmt: skip
        wait(url, "/health/ready", 30)
        workloads = [
            ("evaluation suite x2", _eval_suite(), KEYS["evals"]),
            ("agent tests in CI x3", _agent_suite(), KEYS["agents"]),
        ]
        for name, work, key in workloads:
            direct = asyncio.run(_replay(upstream_url, "sk-up", "gpt-4o", work[:30]))
            plain = asyncio.run(_replay(url, key, "plain", work))
            cached = asyncio.run(_replay(url, key, "cached", work))
            base = statistics.median(t for t, _, _ in plain)
            hits = [t for t, said, _ in cached if said == "hit"]
            misses = [t for t, said, _ in cached if said == "miss"]
            added = statistics.median(misses) - base if misses else 0.0
            paid_plain, _ = _money(ledger, [i for _, _, i in plain])
            paid, saved = _money(ledger, [i for _, _, i in cached])
            lines.append(
                f"| {name} | {len(work)} | {len(hits) / len(work):.0%} | ${paid_plain:.4f} | "
                f"${paid:.4f} | ${saved:.4f} | {_ms([t for t, _, _ in direct], 0.5)} | "
                f"{base * 1000:.1f} | {_ms(hits, 0.5)} / "
                f"{_ms(hits, 0.95)} | {_ms(misses, 0.5)} / {_ms(misses, 0.95)} | "
                f"{added * 1000:+.1f} |"
            )
        theirs = _eval_suite()[:20]  # asked by the evals team above
        fresh = [
            {**q, "messages": [{"role": "user", "content": f"never asked {i}"}]}
            for i, q in enumerate(theirs)
        ]
        asked = asyncio.run(_replay(url, KEYS["other"], "cached", theirs))
        never = asyncio.run(_replay(url, KEYS["other"], "cached", fresh))
        assert {s for _, s, _ in asked + never} == {"miss"}
        lines.append(
            f"| another team: 20 questions the evals team asked vs 20 nobody asked | 40 | 0% | "
            f"- | - | - | - | - | - | {_ms([t for t, _, _ in asked], 0.5)} vs "
            f"{_ms([t for t, _, _ in never], 0.5)} | - |"
        )
    finally:
        for proc in procs:
            stop(proc)
    print(
        "| workload | requests | hit ratio | paid, no cache | paid, cache | saved (ledger) | "
        "direct upstream p50 (ms) | no cache p50 (ms) | hit p50 / p95 (ms) | "
        "miss p50 / p95 (ms) | a miss adds, p50 (ms) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
