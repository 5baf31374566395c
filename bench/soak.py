"""Sustained load: does anything grow? One gateway worker under steady mixed traffic for a
long time, sampled every interval.

    .venv/bin/python bench/soak.py                      # 20 minutes, sampled each minute
    .venv/bin/python bench/soak.py --minutes 1 --sample-s 10

Traffic (`--rate` requests/s, steady): 45% whole answers, 25% streams read to the end, 10%
streams the client walks away from after the first events, 10% bad requests (400), 10%
embeddings; the primary upstream fails 10% of its requests with 503, so the fallback target
is in use all along. Sampled from the gateway process: RSS and open file descriptors
(/proc), live asyncio tasks and the ledger's backlog (its /metrics). At the end: each
series' growth over the last three quarters of the run (should be ~0), and whether every
answered request has exactly one ledger row.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sqlite3
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from pool_procs import free_port, spawn, stop, wait  # noqa: E402

KEY = "sk-soak"


@dataclass
class Sample:
    at_s: float
    rss_mb: float
    fds: int
    tasks: int
    ledger_backlog: int
    journal_kb: float
    sent: int


@dataclass
class SoakResult:
    samples: list[Sample]
    outcomes: Counter[str] = field(default_factory=Counter)
    answered: list[str] = field(default_factory=list)
    missing_rows: int = 0
    duplicate_rows: int = 0

    def growth(self, name: str) -> float:
        """The series' change over the last three quarters of the run (the first quarter
        is warm-up: pools, caches and the allocator settle)."""
        steady = self.samples[len(self.samples) // 4 :]
        values = [getattr(s, name) for s in steady]
        return float(values[-1] - values[0]) if len(values) > 1 else 0.0


def _config(openai_port: int, anthropic_port: int, ledger: Path) -> str:
    return textwrap.dedent(f"""\
        server: {{drain_s: 0}}
        ledger: {{url: "sqlite:///{ledger}"}}
        providers:
          primary:
            kind: openai
            api_base: http://127.0.0.1:{openai_port}/v1
          claude:
            kind: anthropic
            api_base: http://127.0.0.1:{anthropic_port}
        routes:
          chat:
            targets:
              - {{provider: primary, model: gpt-4o}}
              - {{provider: claude, model: claude-sonnet-4-5}}
          embed:
            targets: [{{provider: primary, model: text-embedding-3-small}}]
        keys:
          - {{name: soak, team: soak, key: {KEY}}}
        """)


def _proc_stats(pid: int) -> tuple[float, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    return rss_kb / 1024, len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _gauge(metrics: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else 0.0


async def _one(
    session: aiohttp.ClientSession, url: str, rng: random.Random, result: SoakResult
) -> None:
    roll = rng.random()
    request_id = uuid.uuid4().hex
    headers = {"Authorization": f"Bearer {KEY}", "x-request-id": request_id}
    chat = {"model": "chat", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    if roll < 0.45:
        kind, path, body = "whole", "/v1/chat/completions", chat
    elif roll < 0.70:
        kind, path, body = "stream", "/v1/chat/completions", {**chat, "stream": True}
    elif roll < 0.80:
        kind, path, body = "walk_away", "/v1/chat/completions", {**chat, "stream": True}
    elif roll < 0.90:
        kind, path, body = "bad", "/v1/chat/completions", {"model": "chat", "messages": []}
    else:
        kind, path, body = "embed", "/v1/embeddings", {"model": "embed", "input": "hi"}
    try:
        async with session.post(url + path, json=body, headers=headers) as reply:
            if kind == "walk_away":
                await reply.content.readany()
                reply.close()  # the client leaves mid-stream
                result.outcomes["walked_away"] += 1
                return
            data = await reply.read()
            result.outcomes[f"{kind}:{reply.status}"] += 1
            complete = kind != "stream" or data.rstrip().endswith(b"data: [DONE]")
            if complete:
                result.answered.append(request_id)
    except (aiohttp.ClientError, TimeoutError):
        result.outcomes[f"{kind}:client_error"] += 1


async def _load(url: str, rate: float, seconds: float, result: SoakResult, seed: int) -> None:
    rng = random.Random(seed)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        tasks: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        sent = 0
        while (now := time.monotonic() - started) < seconds:
            due = int(now * rate) + 1
            while sent < due:
                task = asyncio.create_task(_one(session, url, rng, result))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks, return_exceptions=True)


async def _sampler(url: str, pid: int, every_s: float, seconds: float, result: SoakResult) -> None:
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            at = time.monotonic() - started
            metrics = (await client.get(url + "/metrics")).text
            rss, fds = _proc_stats(pid)
            result.samples.append(
                Sample(
                    at_s=round(at, 1),
                    rss_mb=round(rss, 1),
                    fds=fds,
                    tasks=int(_gauge(metrics, "spillover_event_loop_tasks")),
                    ledger_backlog=int(_gauge(metrics, "spillover_ledger_queue_depth")),
                    journal_kb=round(_gauge(metrics, "spillover_ledger_journal_bytes") / 1024, 1),
                    sent=sum(result.outcomes.values()),
                )
            )
            if at >= seconds:
                return
            await asyncio.sleep(min(every_s, max(0.0, seconds - at)))


def _check_ledger(ledger: Path, result: SoakResult) -> None:
    with sqlite3.connect(ledger) as conn:
        query = "SELECT client_request_id FROM spillover_ledger"  # the ids this soak sent
        counts = Counter(r for (r,) in conn.execute(query))
    result.missing_rows = sum(1 for r in result.answered if counts[r] == 0)
    result.duplicate_rows = sum(1 for r in result.answered if counts[r] > 1)


def run_soak(seconds: float, sample_s: float, rate: float, workdir: Path) -> SoakResult:
    """Start the upstreams and one gateway worker, run the load, sample, stop."""
    ports = {"openai": free_port(), "anthropic": free_port(), "gateway": free_port()}
    ledger = workdir / "ledger.sqlite"
    config = workdir / "soak.yaml"
    config.write_text(_config(ports["openai"], ports["anthropic"], ledger))
    me = [sys.executable, "-m", "gateway"]
    procs = []
    for wire in ("openai", "anthropic"):
        # The primary fails a tenth of its requests: the fallback is in use all along.
        faults = f"--error-rate {0.1 if wire == 'openai' else 0} --error-status 503"
        faults += " --retry-after-s 0"  # no cool-down: the single-target route keeps serving
        args = f"mock-provider --wire {wire} --port {ports[wire]} --tokens-per-s 400 {faults}"
        procs.append(spawn([*me, *args.split()], workdir / f"mock-{wire}.log"))
    url = f"http://127.0.0.1:{ports['gateway']}"
    try:
        for wire in ("openai", "anthropic"):
            wait(f"http://127.0.0.1:{ports[wire]}", "/health", 30)
        serve = ["serve", "--config", str(config), "--port", str(ports["gateway"])]
        gateway = spawn([*me, *serve, "--log-level", "warning"], workdir / "gateway.log")
        procs.append(gateway)
        wait(url, "/health/ready", 60)
        result = SoakResult(samples=[])

        async def both() -> None:
            await asyncio.gather(
                _load(url, rate, seconds, result, seed=7),
                _sampler(url, gateway.pid, sample_s, seconds, result),
            )

        asyncio.run(both())
    finally:
        for proc in reversed(procs):
            stop(proc)
    _check_ledger(ledger, result)
    return result


def _print(result: SoakResult) -> None:
    print("| t (s) | RSS (MB) | open fds | asyncio tasks | ledger backlog | journal (KB) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for s in result.samples:
        print(
            f"| {s.at_s:.0f} | {s.rss_mb:.1f} | {s.fds} | {s.tasks} | {s.ledger_backlog} "
            f"| {s.journal_kb:.1f} |"
        )
    print()
    print(
        "growth over the last three quarters: "
        + ", ".join(
            f"{name} {result.growth(name):+g}" for name in ("rss_mb", "fds", "tasks", "journal_kb")
        )
    )
    print("outcomes:", dict(sorted(result.outcomes.items())))
    print(
        f"answered {len(result.answered)}; without a ledger row {result.missing_rows}; "
        f"with more than one {result.duplicate_rows}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--sample-s", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spillover-soak-") as tmp:
        result = run_soak(args.minutes * 60, args.sample_s, args.rate, Path(tmp))
    _print(result)


if __name__ == "__main__":
    main()
