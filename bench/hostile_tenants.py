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
import multiprocessing
import os
import sys
import textwrap
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
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


def _config(
    port: int, mock_port: int, quiet_port: int, ledger: Path, rpm: int, body: int, lane: int
) -> str:
    hostile = "\n".join(
        f"  - {{name: hostile-{i}, team: hostile-{i}, key: {key}, limits: {{rpm: {rpm}}}}}"
        for i, key in enumerate(HOSTILE)
    )
    return (
        textwrap.dedent(f"""\
        server: {{host: 127.0.0.1, port: {port}, access_log: false, max_body_bytes: {body},
                  heavy_lane_bytes: {lane}}}
        ledger: {{url: "sqlite:///{ledger}"}}
        responses: {{max_history_bytes: {body}}}
        providers:
          mock: {{kind: openai, api_base: "http://127.0.0.1:{mock_port}/v1", api_key: sk-up}}
          quiet-mock: {{kind: openai, api_base: "http://127.0.0.1:{quiet_port}/v1", api_key: sk-up}}
        routes:
          gpt-4o: {{targets: [{{provider: mock, model: gpt-4o}}]}}
          quiet-model: {{targets: [{{provider: quiet-mock, model: gpt-4o}}]}}
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


def _summary(took: list[float]) -> dict[str, float]:
    return {
        **{f"p{p}_ms": _pct(took, p) for p in (50, 90, 95, 99)},
        "max_ms": max(took) * 1000,
        "n": len(took),
    }


async def _quiet_client(url: str, duration: float, model: str) -> list[float]:
    body = {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {QUIET}"}
    took: list[float] = []
    async with aiohttp.ClientSession() as session:
        deadline = time.perf_counter() + duration
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.post(url + "/v1/chat/completions", json=body, headers=headers) as r:
                await r.read()
                assert r.status == 200, r.status
            took.append(time.perf_counter() - started)
            await asyncio.sleep(0.02)  # an interactive tenant, not a load generator
    return took


def _quiet_measured(url: str, duration: float, model: str) -> list[float]:
    return asyncio.run(_quiet_client(url, duration, model))


def _pinned(nice: int, cpus: set[int]) -> None:
    os.nice(nice)
    os.sched_setaffinity(0, cpus)


def _in_process(nice: int, cpus: set[int]) -> ProcessPoolExecutor:
    """A process of its own for one side of the load (at `nice`): neither side's client
    may delay the other's, nor the clock that measures the quiet tenant."""
    return ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_pinned,
        initargs=(nice, cpus),
    )


async def _quiet(url: str, duration: float, model: str, cpus: set[int]) -> list[float]:
    with _in_process(0, cpus) as pool:
        return await asyncio.get_running_loop().run_in_executor(
            pool, _quiet_measured, url, duration, model
        )


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


async def _hostile_clients(
    url: str, stored: list[str], body: int, duration: float
) -> dict[str, int]:
    count = json.dumps(_largest_count(body)).encode()
    seen: Counter[str] = Counter()
    deadline = time.perf_counter() + duration
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(
            _hostile(session, url, key, previous, count, deadline, seen)
            for key, previous in zip(HOSTILE, stored, strict=True)
        ))  # fmt: skip
    return dict(sorted(seen.items()))


def _hostile_load(url: str, stored: list[str], body: int, duration: float) -> dict[str, int]:
    return asyncio.run(_hostile_clients(url, stored, body, duration))


async def _under_load(
    url: str, quiet_url: str, model: str, stored: list[str], body: int, args: argparse.Namespace
) -> tuple[list[float], dict[str, int]]:
    with _in_process(args.hostile_nice, {0}) as pool:
        hostile = asyncio.get_running_loop().run_in_executor(
            pool, _hostile_load, url, stored, body, args.duration + 1
        )
        return await asyncio.gather(
            _quiet(quiet_url, args.duration, model, args.quiet_cpus), hostile
        )


async def _run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    stored: list[str] = []
    body = args.body_mib * 1024 * 1024
    turn = _largest_turn(body)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        for key in HOSTILE:
            headers = {"Authorization": f"Bearer {key}"}
            async with session.post(url + "/v1/responses", json=turn, headers=headers) as r:
                answer = await r.json()
                assert r.status == 200, answer
                stored.append(answer["id"])
    model = "quiet-model" if args.quiet_upstream == "own" else "gpt-4o"
    await _quiet(url, 2, model, args.quiet_cpus)  # warm-up
    alone = await _quiet(url, args.duration, model, args.quiet_cpus)
    loaded, seen = await _under_load(url, url, model, stored, body, args)
    control: dict[str, Any] = {}
    if args.control:  # the same client straight to its upstream: what the machine adds
        direct = f"http://127.0.0.1:{args.quiet_port}"
        control["alone"] = _summary(await _quiet(direct, args.duration, "gpt-4o", args.quiet_cpus))
        control["loaded"] = _summary(
            (await _under_load(url, direct, "gpt-4o", stored, body, args))[0]
        )
    return {
        "history_bytes": len(json.dumps(turn)),
        "count_tokens_bytes": len(json.dumps(_largest_count(body))),
        "hostile_rpm": args.hostile_rpm,
        "body_mib": args.body_mib,
        "alone": _summary(alone),
        "loaded": _summary(loaded),
        "hostile_answers": seen,
        "control_direct_to_upstream": control,
        "heavy_lane_mib": args.heavy_lane_mib,
        "quiet_upstream": args.quiet_upstream,
        "hostile_nice": args.hostile_nice,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--hostile-rpm", type=int, default=60)
    parser.add_argument("--body-mib", type=int, default=8, help="max body and history, MiB")
    parser.add_argument(
        "--hostile-nice", type=int, default=10,
        help="the hostile clients' and their mock's niceness: they stand for other machines",
    )  # fmt: skip
    parser.add_argument(
        "--control", action="store_true",
        help="also time the quiet client straight to its upstream, alone and under the load",
    )  # fmt: skip
    parser.add_argument(
        "--layout", choices=("split", "shared"), default="split",
        help="split: the hostile clients and their mock on CPU 0, the quiet tenant's client "
        "and mock on CPU 1 beside the gateway (the hostile side stands for other machines); "
        "shared: every client and mock on CPU 0",
    )  # fmt: skip
    parser.add_argument("--heavy-lane-mib", type=float, default=1.0, help="0: no heavy lane")
    parser.add_argument(
        "--quiet-upstream", choices=("own", "shared"), default="own",
        help="own: the quiet tenant's route has a mock of its own (ours is one event loop, "
        "which a real provider is not); shared: the hostile tenants' mock",
    )  # fmt: skip
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    logs = Path("/tmp/bench-hostile")
    logs.mkdir(exist_ok=True)
    ledger = logs / "ledger.sqlite"
    ledger.unlink(missing_ok=True)
    mock_port, quiet_port, port = free_port(), free_port(), free_port()
    args.quiet_port = quiet_port
    config = logs / "gateway.yaml"
    config.write_text(
        _config(
            port,
            mock_port,
            quiet_port,
            ledger,
            args.hostile_rpm,
            args.body_mib * 1024**2,
            int(args.heavy_lane_mib * 1024**2),
        )
    )
    args.quiet_cpus = {1} if args.layout == "split" else {0}
    quiet_mock = ((quiet_port, "1" if args.layout == "split" else "0"),)
    with mock_and_gateway(config, mock_port, port, logs, quiet_mock, args.hostile_nice) as url:
        results = asyncio.run(_run(url, args))
    out = results_path(f"hostile-tenants-{args.body_mib}mib-rpm{args.hostile_rpm}")
    out.write_text(json.dumps(results, indent=2))
    alone, loaded = results["alone"], results["loaded"]
    print(f"\nTen hostile tenants (rpm {args.hostile_rpm} each): the largest stored history "
          f"({results['history_bytes']:,} bytes) continued, and count_tokens bodies of "
          f"{results['count_tokens_bytes']:,} bytes with 512 tools")  # fmt: skip
    print("| quiet tenant's chat | p50 ms | p90 ms | p95 ms | p99 ms | max ms | requests |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = [("alone", alone), ("with ten hostile tenants", loaded)]
    if control := results["control_direct_to_upstream"]:
        rows += [("control: straight to its upstream, alone", control["alone"]),
                 ("control: … with the load", control["loaded"])]  # fmt: skip
    for name, row in rows:
        print(f"| {name} | {row['p50_ms']:.1f} | {row['p90_ms']:.1f} | {row['p95_ms']:.1f} "
              f"| {row['p99_ms']:.1f} | {row['max_ms']:.1f} | {row['n']:.0f} |")  # fmt: skip
    print(f"\np99 loaded / alone: {loaded['p99_ms'] / alone['p99_ms']:.2f}x")
    if control:
        ratio = control["loaded"]["p99_ms"] / control["alone"]["p99_ms"]
        print(f"control (no gateway) p99 loaded / alone: {ratio:.2f}x")
    print("hostile answers:", results["hostile_answers"])
    print(f"raw: {out.relative_to(ROOT)} (one run: run twice before believing a tail)")


if __name__ == "__main__":
    main()
