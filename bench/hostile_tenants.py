"""Ten hostile tenants against one quiet one: each hostile tenant stores the largest
conversation the bounds allow (one turn just under `server.max_body_bytes`), then sends, as
fast as its limits let it, 116-byte requests that continue it (`store: false`) and the
largest `count_tokens` bodies (512 tools, just under the body bound). The quiet tenant's
chat p50/p99 is measured alone, then under that load; the issue's bar is p99 within 2x.

    .venv/bin/python bench/hostile_tenants.py [--duration 15] [--hostile-rpm 60] [--body-mib 8]

The gateway runs on CPU 1 with one worker, the mock and the load generator on CPU 0: compare
ratios within one run. Writes bench/results/<date>-<commit>-hostile-tenants.json and prints
the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from pool_procs import free_port, mock_and_gateway  # noqa: E402
from results_path import results_path  # noqa: E402

QUIET = "sk-quiet-tenant"
HOSTILE = [f"sk-hostile-{i}" for i in range(10)]
BODY_BYTES = 8 * 1024 * 1024  # server.max_body_bytes, the default (--body-mib sets both)


def _config(port: int, mock_port: int, ledger: Path, rpm: int, body: int) -> str:
    hostile = "\n".join(
        f"  - {{name: hostile-{i}, team: hostile-{i}, key: {key}, limits: {{rpm: {rpm}}}}}"
        for i, key in enumerate(HOSTILE)
    )
    return (
        textwrap.dedent(f"""\
        server: {{host: 127.0.0.1, port: {port}, access_log: false, max_body_bytes: {body}}}
        ledger: {{url: "sqlite:///{ledger}"}}
        responses: {{max_history_bytes: {body}}}
        providers:
          mock: {{kind: openai, api_base: "http://127.0.0.1:{mock_port}/v1", api_key: sk-up}}
        routes:
          gpt-4o: {{targets: [{{provider: mock, model: gpt-4o}}]}}
        keys:
          - {{name: quiet, team: quiet, key: {QUIET}}}
        """)
        + hostile
        + "\n"
    )


def _largest_turn(body: int) -> dict[str, Any]:
    words = "lorem ipsum dolor sit amet " * ((body - 64 * 1024) // 27)
    return {"model": "gpt-4o", "input": words, "max_output_tokens": 8}


def _largest_count(body: int) -> dict[str, Any]:
    pad = "a description that pads the tool out " * (400 * body // BODY_BYTES)
    tools = [
        {"name": f"tool_{i}", "description": pad, "input_schema": {"type": "object"}}
        for i in range(512)
    ]
    size = len(json.dumps(tools))
    text = "x " * max(0, (body - 64 * 1024 - size) // 2)
    return {"model": "gpt-4o", "tools": tools, "messages": [{"role": "user", "content": text}]}


def _pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] * 1000


async def _quiet(session: aiohttp.ClientSession, url: str, duration: float) -> list[float]:
    body = {"model": "gpt-4o", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {QUIET}"}
    took: list[float] = []
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
            await r.read()
            assert r.status == 200, r.status
        took.append(time.perf_counter() - started)
        await asyncio.sleep(0.02)  # an interactive tenant, not a load generator
    return took


async def _hostile(
    session: aiohttp.ClientSession, url: str, key: str, previous: str, count: bytes,
    deadline: float, seen: Counter[str],
) -> None:  # fmt: skip
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    small = json.dumps({"model": "gpt-4o", "input": "hi", "store": False,
                        "previous_response_id": previous}).encode()  # fmt: skip
    turn = 0
    while time.perf_counter() < deadline:
        path, data = (("/v1/responses", small) if turn % 2 == 0
                      else ("/v1/messages/count_tokens", count))  # fmt: skip
        async with session.post(url + path, data=data, headers=headers) as reply:
            await reply.read()
            seen[f"{path} {reply.status}"] += 1
            if reply.status == 429:  # as told, then the same request again
                await asyncio.sleep(float(reply.headers.get("retry-after", "1")))
            else:
                turn += 1


async def _run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        stored: list[str] = []
        body = args.body_mib * 1024 * 1024
        turn = _largest_turn(body)
        for key in HOSTILE:
            headers = {"Authorization": f"Bearer {key}"}
            async with session.post(url + "/v1/responses", json=turn, headers=headers) as r:
                answer = await r.json()
                assert r.status == 200, answer
                stored.append(answer["id"])
        await _quiet(session, url, 2)  # warm-up
        alone = await _quiet(session, url, args.duration)
        count = json.dumps(_largest_count(body)).encode()
        seen: Counter[str] = Counter()
        deadline = time.perf_counter() + args.duration + 1
        hostile = [
            _hostile(session, url, key, previous, count, deadline, seen)
            for key, previous in zip(HOSTILE, stored, strict=True)
        ]
        loaded, *_ = await asyncio.gather(_quiet(session, url, args.duration), *hostile)
    return {
        "history_bytes": len(json.dumps(turn)),
        "count_tokens_bytes": len(count),
        "hostile_rpm": args.hostile_rpm,
        "body_mib": args.body_mib,
        "alone": {"p50_ms": _pct(alone, 50), "p99_ms": _pct(alone, 99), "n": len(alone)},
        "loaded": {"p50_ms": _pct(loaded, 50), "p99_ms": _pct(loaded, 99), "n": len(loaded)},
        "hostile_answers": dict(sorted(seen.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--hostile-rpm", type=int, default=60)
    parser.add_argument("--body-mib", type=int, default=8, help="max body and history, MiB")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    logs = Path("/tmp/bench-hostile")
    logs.mkdir(exist_ok=True)
    ledger = logs / "ledger.sqlite"
    ledger.unlink(missing_ok=True)
    mock_port, port = free_port(), free_port()
    config = logs / "gateway.yaml"
    config.write_text(
        _config(port, mock_port, ledger, args.hostile_rpm, args.body_mib * 1024 * 1024)
    )
    with mock_and_gateway(config, mock_port, port, logs) as url:
        results = asyncio.run(_run(url, args))
    out = results_path(f"hostile-tenants-{args.body_mib}mib-rpm{args.hostile_rpm}")
    out.write_text(json.dumps(results, indent=2))
    alone, loaded = results["alone"], results["loaded"]
    print(f"\nTen hostile tenants (rpm {args.hostile_rpm} each): the largest stored history "
          f"({results['history_bytes']:,} bytes) continued, and count_tokens bodies of "
          f"{results['count_tokens_bytes']:,} bytes with 512 tools")  # fmt: skip
    print("| quiet tenant's chat | p50 ms | p99 ms | requests |")
    print("| --- | ---: | ---: | ---: |")
    for name, row in (("alone", alone), ("with ten hostile tenants", loaded)):
        print(f"| {name} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['n']} |")
    print(f"\np99 loaded / alone: {loaded['p99_ms'] / alone['p99_ms']:.2f}x")
    print("hostile answers:", results["hostile_answers"])
    print(f"raw: {out.relative_to(ROOT)} (one run: run twice before believing a tail)")


if __name__ == "__main__":
    main()
