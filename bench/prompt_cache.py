"""Prompt caching with and without the shape stage, on a seeded multi-tenant agent workload.

    .venv/bin/python bench/prompt_cache.py

Four applications, each with a ~3,000-token system prompt that starts with the current time
and a request id, and ten tools whose order (and key order) the client library varies per
request; five four-turn conversations per application, each turn resending the history.
Replayed through the gateway against the caching mock OpenAI and Anthropic providers (list
prices below, 50 ms of prefill per 1,000 uncached tokens) and against two simulated vLLM
replicas, with shaping off and on. Reported: the cached share of prompt tokens, the input
cost at list prices, and TTFT (streams, to the first content token).
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from pool_procs import free_port, spawn, stop, wait  # noqa: E402

KEY = "sk-bench"
# USD per million tokens: fresh input, cache read, cache write (gpt-4o; claude-sonnet-4-5).
PRICES = {"openai": (2.50, 1.25, 2.50), "claude": (3.00, 0.30, 3.75), "pool": (0.40, 0.40, 0.40)}
MODELS = {"openai": "gpt-4o", "claude": "claude-sonnet-4-5", "pool": "sim-llama"}
VOLATILE = [r"\d{4}-\d{2}-\d{2}T[\d:.]+Z", r"req-[0-9a-f]{12}"]


def _tool(rng: random.Random, i: int) -> dict[str, Any]:
    props = {
        f"field_{k}": {"type": "string", "description": f"Field {k} of tool {i}."} for k in range(6)
    }
    items = list(props.items())
    rng.shuffle(items)  # the client library builds the schema in a different order each time
    spec = {
        "name": f"tool_{i}",
        "description": f"Tool {i}: looks things up. " * 6,
        "parameters": {"type": "object", "properties": dict(items)},
    }
    keys = list(spec.items())
    rng.shuffle(keys)
    return {"type": "function", "function": dict(keys)}


def _system(app: int, rng: random.Random) -> str:
    now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{rng.randint(0, 999):03d}Z"
    body = f"You are assistant {app} of the operations platform. " + (
        f"Rule {app}: follow the runbook, cite the ticket, never guess. " * 190
    )
    return f"Current time: {now}. Request id: req-{uuid.uuid4().hex[:12]}. " + body


@dataclass
class Totals:
    prompt: int = 0
    cached: int = 0
    written: int = 0
    cost: float = 0.0
    ttft: list[float] = field(default_factory=list)
    errors: int = 0


async def _turn(
    session: aiohttp.ClientSession,
    url: str,
    route: str,
    messages: list[Any],
    tools: list[Any],
    kind: str,
    totals: Totals,
) -> str:
    body = {
        "model": route,
        "messages": messages,
        "tools": tools,
        "tool_choice": "none",
        "max_tokens": 16,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = None
    text = []
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
        if r.status != 200:
            totals.errors += 1
            await r.read()
            return ""
        async for line in r.content:
            if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                continue
            data = json.loads(line[6:])
            for choice in data.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    first = first or time.perf_counter()
                    text.append(piece)
            usage = data.get("usage")
            if usage:
                cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
                written = usage.get("cache_creation_input_tokens") or 0
                prompt = usage["prompt_tokens"]
                fresh_price, read_price, write_price = PRICES[kind]
                totals.prompt += prompt
                totals.cached += cached
                totals.written += written
                totals.cost += (
                    (prompt - cached - written) * fresh_price
                    + cached * read_price
                    + written * write_price
                ) / 1e6
    if first is not None:
        totals.ttft.append(first - started)
    return "".join(text)


async def replay(
    url: str,
    route: str,
    kind: str,
    seed: int,
    apps: int = 4,
    conversations: int = 5,
    turns: int = 4,
) -> Totals:
    totals = Totals()
    async with aiohttp.ClientSession() as session:

        async def conversation(app: int, n: int) -> None:
            rng = random.Random(seed * 1000 + app * 10 + n)
            history: list[Any] = []
            for turn in range(turns):
                tools = [_tool(rng, i) for i in range(10)]
                rng.shuffle(tools)
                history.append({"role": "user", "content": f"Ticket {n}, step {turn}: status?"})
                messages = [{"role": "system", "content": _system(app, rng)}, *history]
                reply = await _turn(session, url, route, messages, tools, kind, totals)
                history.append({"role": "assistant", "content": reply or "ok"})

        for n in range(conversations):  # applications in parallel, conversations in turn
            await asyncio.gather(*(conversation(app, n) for app in range(apps)))
    return totals


def _config(port: int, openai_port: int, claude_port: int, sim_port: int) -> str:
    volatile = ", ".join(f"'{p}'" for p in VOLATILE)
    routes = []
    for kind, provider in (("openai", "openai"), ("claude", "claude"), ("pool", "pool")):
        model = MODELS[kind]
        routes.append(f"""\
          {kind}-off:
            targets: [{{provider: {provider}, model: {model}}}]
            prompt_cache: {{canonical_tools: false, anthropic_breakpoints: false,
                            openai_cache_key: false}}
          {kind}-on:
            targets: [{{provider: {provider}, model: {model}}}]
            prompt_cache: {{volatile: [{volatile}]}}
""")
    return (
        textwrap.dedent(f"""\
        server: {{port: {port}}}
        ledger: {{url: "sqlite:////tmp/spillover-bench-prompt-cache.sqlite"}}
        providers:
          openai: {{kind: openai, api_base: "http://127.0.0.1:{openai_port}/v1"}}
          claude: {{kind: anthropic, api_base: "http://127.0.0.1:{claude_port}"}}
          pool:
            kind: vllm_pool
            model: sim-llama
            replicas: ["http://127.0.0.1:{sim_port}", "http://127.0.0.1:{sim_port + 1}"]
        routes:
        """)
        + "".join(routes)
        + textwrap.dedent("""\
        keys:
          - {name: bench, team: agents, key: sk-bench}
        """)
    )


def main() -> None:
    logs = Path("/tmp/spillover-prompt-cache-bench")
    logs.mkdir(exist_ok=True)
    me = [str(ROOT / ".venv/bin/spillover")]
    openai_port, claude_port, sim_port, port = free_port(), free_port(), free_port(), free_port()
    knobs = ["--output-tokens", "16"]
    procs = [
        spawn(
            [*me, "mock-provider", "--wire", "openai", "--port", str(openai_port), *knobs],
            logs / "openai.log",
        ),
        spawn(
            [*me, "mock-provider", "--wire", "anthropic", "--port", str(claude_port), *knobs],
            logs / "claude.log",
        ),
        spawn(
            [
                *me,
                "sim-vllm",
                "--port",
                str(sim_port),
                "--replicas",
                "2",
                "--model",
                "sim-llama",
                "--block-size",
                "16",
                "--kv-blocks",
                "8192",
                "--max-model-len",
                "32768",
                "--step-base-ms",
                "20",
                "--prefill-tokens-per-s",
                "20000",
            ],
            logs / "sim.log",
        ),
    ]
    config = logs / "gateway.yaml"
    config.write_text(_config(port, openai_port, claude_port, sim_port))
    try:
        for mock_port in (openai_port, claude_port):
            wait(f"http://127.0.0.1:{mock_port}", "/health", 30)
            httpx.post(
                f"http://127.0.0.1:{mock_port}/_mock/config", json={"uncached_ms_per_1k_tokens": 50}
            ).raise_for_status()
        procs.append(spawn([*me, "serve", "--config", str(config)], logs / "gateway.log"))
        url = f"http://127.0.0.1:{port}"
        wait(url, "/health/ready", 30)
        time.sleep(2)  # the pool's replicas warm up
        rows = []
        for kind in ("openai", "claude", "pool"):
            for mode in ("off", "on"):
                t = asyncio.run(replay(url + "/v1/chat/completions", f"{kind}-{mode}", kind, 7))
                rows.append((kind, mode, t))
                print(
                    f"{kind:6} shaping {mode:3}: cached {t.cached / max(1, t.prompt):6.1%} of "
                    f"{t.prompt:,} prompt tokens, input ${t.cost:.4f}, TTFT p50 "
                    f"{statistics.median(t.ttft) * 1000:.0f} ms, errors {t.errors}",
                    flush=True,
                )
    finally:
        for proc in procs:
            stop(proc)
    print()
    print(
        "| target | shaping | cached share of prompt tokens | input cost (USD) | "
        "TTFT p50 ms | TTFT p90 ms | errors |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for kind, mode, t in rows:
        p90 = statistics.quantiles(t.ttft, n=10)[-1] * 1000 if len(t.ttft) > 1 else float("nan")
        print(
            f"| {kind} | {mode} | {t.cached / max(1, t.prompt):.1%} | {t.cost:.4f} | "
            f"{statistics.median(t.ttft) * 1000:.0f} | {p90:.0f} | {t.errors} |"
        )
    for kind in ("openai", "claude", "pool"):
        off = next(t for k, m, t in rows if k == kind and m == "off")
        on = next(t for k, m, t in rows if k == kind and m == "on")
        ratio_off, ratio_on = off.cached / max(1, off.prompt), on.cached / max(1, on.prompt)
        saving = 1 - on.cost / off.cost if off.cost else float("nan")
        print(
            f"{kind}: cached share x{ratio_on / ratio_off if ratio_off else float('inf'):.1f}, "
            f"input cost {saving:.0%} lower"
        )


if __name__ == "__main__":
    main()
