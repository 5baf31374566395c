"""What each client protocol costs: the same answer asked for as an OpenAI chat completion,
an Anthropic message and an OpenAI Response, through the gateway to one OpenAI-wire mock,
next to the mock asked directly — and an agent-sized Anthropic request (100 KB, 40 tools,
cache_control on three blocks) streamed next to a small one.

    .venv/bin/python bench/ingress.py [--duration 8] [--conc 1,16] [--trace]

The mock (spillover's own, no delay) runs on CPU 0 with the load generator, the gateway on
CPU 1 with one worker: compare ratios within one run. Writes bench/results/<date>-<commit>-
ingress.json and prints the tables. `--trace`: the same with OpenTelemetry tracing on, its
spans exported to a sink in this process (`ingress-traced.json`); `--sample-ratio 0.1`: a
tenth of the requests traced (`ingress-traced-0.1.json`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from pool_procs import free_port, mock_and_gateway  # noqa: E402
from results_path import results_path  # noqa: E402

from gateway.providers.translate.anthropic_openai import request_to_openai  # noqa: E402

KEY = "sk-bench"
PROMPT = "Say hello to the benchmark."


def _bodies(model: str) -> dict[str, tuple[str, dict[str, Any], dict[str, str]]]:
    bearer = {"Authorization": f"Bearer {KEY}"}
    anthropic = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    return {
        "chat": ("/v1/chat/completions", {"model": model, "max_tokens": 16,
                 "messages": [{"role": "user", "content": PROMPT}]}, bearer),
        "messages": ("/v1/messages", {"model": model, "max_tokens": 16,
                     "messages": [{"role": "user", "content": PROMPT}]}, anthropic),
        "responses": ("/v1/responses", {"model": model, "max_output_tokens": 16,
                      "input": PROMPT, "store": False}, bearer),
    }  # fmt: skip


def _agent_request(model: str) -> dict[str, Any]:
    """What coding agents send: a long system prompt, dozens of tools, a long history."""
    tools = [
        {
            "name": f"tool_{i}",
            "description": f"Tool {i} reads and edits files of the workspace. " * 8,
            "input_schema": {
                "type": "object",
                "properties": {
                    f"arg_{k}": {"type": "string", "description": "An argument."} for k in range(6)
                },
                "required": ["arg_0"],
            },
        }
        for i in range(40)
    ]
    tools[-1]["cache_control"] = {"type": "ephemeral"}
    system = [{"type": "text", "text": "You are a careful coding agent. " * 1000,
               "cache_control": {"type": "ephemeral"}}]  # fmt: skip
    history: list[dict[str, Any]] = []
    for turn in range(12):
        history.append({"role": "user", "content": f"Step {turn}: " + "look at this file. " * 120})
        history.append({"role": "assistant", "content": "Done: " + "edited. " * 60})
    last = {"type": "text", "text": "Next step.", "cache_control": {"type": "ephemeral"}}
    history.append({"role": "user", "content": [last]})
    return {"model": model, "max_tokens": 16, "system": system, "tools": tools,
            "messages": history, "stream": True}  # fmt: skip


async def _load(
    url: str, body: dict[str, Any], headers: dict[str, str], conc: int, duration: float
) -> dict[str, Any]:
    """Closed loop: `conc` clients, each sending the next request when one is answered."""
    payload = json.dumps(body).encode()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.post(
                    url, data=payload, headers={**headers, "content-type": "application/json"}
                ) as reply:
                    await reply.read()
                    if reply.status != 200:
                        errors += 1
                        continue
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(conc)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": _pct(latencies, 50),
        "p99_ms": _pct(latencies, 99),
        "errors": errors,
        "n": len(latencies),
    }


async def _streams(
    url: str, body: dict[str, Any], headers: dict[str, str], count: int
) -> dict[str, Any]:
    """One stream at a time: time to the first event and to the end."""
    first: list[float] = []
    total: list[float] = []
    payload = json.dumps({**body, "stream": True}).encode()
    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            started = time.perf_counter()
            async with session.post(
                url, data=payload, headers={**headers, "content-type": "application/json"}
            ) as reply:
                assert reply.status == 200, await reply.text()
                seen = False
                async for _chunk in reply.content.iter_any():
                    if not seen:
                        first.append(time.perf_counter() - started)
                        seen = True
            total.append(time.perf_counter() - started)
    first.sort()
    total.sort()
    return {
        "ttfb_p50_ms": _pct(first, 50),
        "ttfb_p99_ms": _pct(first, 99),
        "total_p50_ms": _pct(total, 50),
        "request_bytes": len(payload),
    }


def _added(row: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    return {**row, "added_ttfb_p50_ms": round(row["ttfb_p50_ms"] - base["ttfb_p50_ms"], 3)}


def _pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))
    return round(values[index] * 1000, 3)


def _config(port: int, mock_port: int, traces: str | None = None, sample: float = 1.0) -> str:
    tracing = (
        f"tracing: {{otlp_endpoint: '{traces}', export_every_ms: 500, sample_ratio: {sample}}}\n"
        if traces
        else ""
    )
    return tracing + textwrap.dedent(f"""\
        server: {{host: 127.0.0.1, port: {port}, access_log: false, max_body_bytes: 4194304}}
        ledger: {{url: "sqlite:////tmp/spillover-bench-ingress.sqlite"}}
        providers:
          mock: {{kind: openai, api_base: "http://127.0.0.1:{mock_port}/v1", api_key: sk-upstream}}
        routes:
          mock-gpt:
            targets: [{{provider: mock, model: mock-gpt}}]
        keys:
          - {{name: bench, team: bench, key: {KEY}}}
        """)


async def _run(gateway: str, mock: str, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"non_stream": [], "stream": []}
    bodies = _bodies("mock-gpt")
    direct_path, direct_body, _ = bodies["chat"]
    for conc in args.conc:
        await _load(mock + direct_path, direct_body, {}, conc, 2)  # warm-up
        base = await _load(mock + direct_path, direct_body, {}, conc, args.duration)
        results["non_stream"].append({"ingress": "direct (mock)", "conc": conc, **base})
        for ingress, (path, body, headers) in bodies.items():
            await _load(gateway + path, body, headers, conc, 2)
            row = await _load(gateway + path, body, headers, conc, args.duration)
            row["added_p50_ms"] = round(row["p50_ms"] - base["p50_ms"], 3)
            row["added_p99_ms"] = round(row["p99_ms"] - base["p99_ms"], 3)
            results["non_stream"].append({"ingress": ingress, "conc": conc, **row})
    small = await _streams(mock + direct_path, direct_body, {}, args.streams)
    results["stream"].append({"ingress": "direct (mock)", **small})
    for ingress, (path, body, headers) in bodies.items():
        row = await _streams(gateway + path, body, headers, args.streams)
        results["stream"].append({"ingress": ingress, **_added(row, small)})
    _, _, anthropic = bodies["messages"]
    agent_body = _agent_request("mock-gpt")
    as_chat = request_to_openai(agent_body, "mock-gpt").body  # what the mock is sent
    big = await _streams(mock + "/v1/chat/completions", as_chat, {}, args.streams)
    results["stream"].append({"ingress": "direct (mock), agent-sized as chat", **big})
    agent = await _streams(gateway + "/v1/messages", agent_body, anthropic, args.streams)
    results["stream"].append({"ingress": "messages, agent-sized", **_added(agent, big)})
    return results


def _otlp_sink() -> str:
    """An OTLP/HTTP endpoint that accepts and drops every batch (in this process, CPU 0)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}/v1/traces"


def _print(results: dict[str, Any]) -> None:
    print("\nNon-streaming (closed loop, aiohttp client)")
    print("| ingress | conc | rps | p50 ms | p99 ms | added p50 | added p99 | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results["non_stream"]:
        print(f"| {r['ingress']} | {r['conc']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r.get('added_p50_ms', '')} | {r.get('added_p99_ms', '')} | "
              f"{r['errors']} |")  # fmt: skip
    print("\nStreaming, one at a time (the mock sends its events without delay)")
    print("| ingress | request bytes | ttfb p50 ms | ttfb p99 ms | total p50 ms | added ttfb p50 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results["stream"]:
        print(f"| {r['ingress']} | {r['request_bytes']:,} | {r['ttfb_p50_ms']:.2f} | "
              f"{r['ttfb_p99_ms']:.2f} | {r['total_p50_ms']:.2f} | "
              f"{r.get('added_ttfb_p50_ms', '')} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--conc", type=lambda s: [int(c) for c in s.split(",")], default=[1, 16])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--trace", action="store_true", help="tracing on, to a local sink")
    parser.add_argument("--sample-ratio", type=float, default=1.0, help="with --trace")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})  # the load generator shares CPU 0 with the mock
    logs = Path("/tmp/bench-ingress")
    logs.mkdir(exist_ok=True)
    mock_port, port = free_port(), free_port()
    config = logs / "gateway.yaml"
    sink = _otlp_sink() if args.trace else None
    config.write_text(_config(port, mock_port, sink, args.sample_ratio))
    with mock_and_gateway(config, mock_port, port, logs) as gateway_url:
        results = asyncio.run(_run(gateway_url, f"http://127.0.0.1:{mock_port}", args))
    results["median_of"] = {"duration_s": args.duration, "streams": args.streams}
    traced = f"ingress-traced-{args.sample_ratio:g}" if args.sample_ratio < 1 else "ingress-traced"
    out = results_path(traced if args.trace else "ingress")
    out.write_text(json.dumps(results, indent=2))
    _print(results)
    print(f"\nraw: {out.relative_to(ROOT)} (one run: run twice before believing a tail)")


if __name__ == "__main__":
    main()
