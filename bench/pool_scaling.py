"""Scaling the pool: reactive against predictive against flat, on the simulated pool, in one run.

    .venv/bin/python bench/pool_scaling.py

One day of traffic compressed to two minutes (an hour is 5 s): quiet nights, business hours
peaking at 13:00, a day that grows 40 % from its first hour to its last (the ramp), and a
spike at 15:00 that no history foretells. Ten simulated vLLM replicas sit behind the gateway;
a replica that is ordered answers `/health` only after its cold start (`LEAD_S`, 10 minutes
of the compressed day), then the gateway warms it up before routing to it; a replica that is
released is taken out of rotation at once. Three scalers drive the same traffic:

- **flat**: the peak's replicas all day, warm before the day starts;
- **reactive**: an HPA on KV-cache usage — every tick, the replicas that bring the pool's
  usage to 60 %, up at once, down one at a time after two quiet ticks;
- **predictive**: what the gateway exports as `spillover_pool_desired_replicas` — the
  product's forecast (`policies.forecast`: two weeks of the day's usual shape as history, and
  today's slots as they are seen, so the trend follows the day's growth) and schedule
  (`policies.schedule.desired`: the default 20 % headroom and warm floor) one lead time
  ahead — never below what the reactive rule asks (the safety net for what no forecast
  sees, like the spike).

Reported: requests, shed (refused or failed), TTFT p99 and the share over the SLO, and
GPU-hours (replicas paid for from the moment they are ordered).
"""

from __future__ import annotations

import asyncio
import math
import random
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from pool_procs import free_port, spawn, stop, wait  # noqa: E402

from policies.forecast import SLOTS_PER_HOUR, Load, fit, held_out_error  # noqa: E402
from policies.pool import Capacity, GpuType  # noqa: E402
from policies.schedule import desired  # noqa: E402

HOUR_S = 5.0  # one hour of the day, in seconds
LEAD_S = HOUR_S / 6  # a cold start of 10 minutes
TICK_S = HOUR_S / 12  # the scalers look every 5 minutes
REPLICAS = 10
KV_BLOCKS, BLOCK = 48, 16  # 768 KV tokens per replica
PROMPT = "Summarise the incident report for the on-call engineer. " * 14  # ~200 tokens
MAX_TOKENS = 32
SLO_TTFT_S = 0.5
TARGET_USAGE = 0.6
KEY = "sk-bench"


def expected_rate(hour: float) -> float:
    """Requests per second as history knows the day: quiet nights, a business-day bump."""
    bump = math.exp(-(((hour - 13.0) / 3.2) ** 2))
    return 1.0 + 11.0 * bump


def actual_rate(hour: float) -> float:
    """Today: the known shape, growing 40 % over the day, and a spike at 15:00."""
    growth = 0.85 + 0.4 * hour / 24
    spike = 2.2 if 15.0 <= hour < 15.5 else 1.0
    return expected_rate(hour) * growth * spike


def replicas_for(rate: float) -> int:
    """What `rate` needs: each request holds ~240 tokens for ~1 s."""
    in_flight = rate * 1.0
    per_replica = KV_BLOCKS * BLOCK * TARGET_USAGE / 240
    return max(1, min(REPLICAS, math.ceil(in_flight / per_replica)))


TOKENS = 240  # what one request holds in the KV cache, for about a second
CAPACITY = Capacity(
    model_memory_gb=1,
    gpus={"sim": GpuType(usd_per_hour=1, memory_gb=2, kv_tokens_per_replica=KV_BLOCKS * BLOCK,
                         tokens_per_s=100_000, lead_time_s=600)},
)  # fmt: skip
MAX_KV_USAGE = 0.92  # the pool's admission default
HISTORY_DAYS = 14
TODAY = HISTORY_DAYS * 24 * SLOTS_PER_HOUR  # the first slot of the bench's day


def slot_load(rate: float) -> Load:
    """A slot's p99 load at `rate` requests per second, each holding ~240 tokens ~1 s: the
    requests in flight are Poisson, their p99 about the mean plus 2.33 deviations."""
    in_flight = rate + 2.33 * math.sqrt(rate)
    return Load(rate * TOKENS, in_flight, in_flight * TOKENS)


class Forecast:
    """The product's forecast and schedule, fed two weeks of the usual day and today's
    slots as the bench's traffic arrives."""

    def __init__(self) -> None:
        self.observed = {
            slot: slot_load(expected_rate((slot % (24 * SLOTS_PER_HOUR)) / SLOTS_PER_HOUR))
            for slot in range(TODAY)
        }
        self.arrivals = 0

    def see(self, hour: float, arrivals: int) -> None:
        """Today's slot that just ended, from the requests that arrived in it."""
        seen = arrivals - self.arrivals
        self.arrivals = arrivals
        self.observed[TODAY + int(hour * SLOTS_PER_HOUR) - 1] = slot_load(seen / TICK_S)

    def replicas(self, hour: float) -> int:
        now = TODAY + int(hour * SLOTS_PER_HOUR)
        model = fit(self.observed, now)
        day = [model.at(now + i) for i in range(24 * SLOTS_PER_HOUR)]
        floor = min(day, key=lambda x: x.kv_tokens).scaled(1 + CAPACITY.warm_floor_margin)
        ahead = model.at(now + round(LEAD_S / TICK_S))
        choice = desired(CAPACITY, ahead, MAX_KV_USAGE, floor)
        return min(REPLICAS, choice.replicas)


@dataclass
class Run:
    name: str
    ttft: list[float] = field(default_factory=list)
    requests: int = 0
    shed: int = 0
    replica_s: float = 0.0
    forecast_error: float | None = None  # the forecast's, for the day (held out), predictive


class Pool:
    """The ten simulated replicas: which are ordered, and ordering or releasing one."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.ordered: list[int] = []

    async def set(self, client: httpx.AsyncClient, count: int, warm: bool = False) -> None:
        while len(self.ordered) < count:
            index = next(i for i in range(REPLICAS) if i not in self.ordered)
            self.ordered.append(index)
            knobs = {"healthy": True, "load_s": 0.0 if warm else LEAD_S}
            await client.post(self.urls[index] + "/_sim/config", json=knobs)
        while len(self.ordered) > count:
            index = self.ordered.pop()
            await client.post(self.urls[index] + "/_sim/config", json={"healthy": False})


async def _kv_usage(client: httpx.AsyncClient, gateway: str) -> float:
    text = (await client.get(gateway + "/metrics")).text
    for line in text.splitlines():
        if line.startswith('spillover_pool_kv_cache_usage{pool="local"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _until_warm(client: httpx.AsyncClient, gateway: str, count: int) -> None:
    """Until the gateway routes to exactly `count` replicas (seen healthy, warmed up)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in (await client.get(gateway + "/metrics")).text.splitlines():
            warm = line.startswith('spillover_pool_warm_replicas{pool="local"}')
            if warm and float(line.rsplit(" ", 1)[1]) == count:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the gateway did not see {count} warm replicas")


async def _scale(name: str, pool: Pool, gateway: str, start: float, run: Run) -> None:
    quiet = 0
    forecast = Forecast()
    async with httpx.AsyncClient(timeout=5) as client:
        while (now := time.monotonic() - start) < 24 * HOUR_S:
            usage = await _kv_usage(client, gateway)
            count = len(pool.ordered)
            reactive = max(1, min(REPLICAS, math.ceil(count * usage / TARGET_USAGE)))
            if name == "flat":
                wanted = count
            else:
                if name == "predictive":
                    forecast.see(now / HOUR_S, run.requests)
                    reactive = max(reactive, forecast.replicas(now / HOUR_S))
                quiet = quiet + 1 if reactive < count else 0
                wanted = reactive if reactive >= count else (count - 1 if quiet >= 2 else count)
            await pool.set(client, wanted)
            run.replica_s += len(pool.ordered) * TICK_S
            await asyncio.sleep(TICK_S)
    if name == "predictive":
        run.forecast_error = held_out_error(forecast.observed, days=1)


async def _ask(client: httpx.AsyncClient, gateway: str, run: Run) -> None:
    body = {"model": "pool", "max_tokens": MAX_TOKENS, "stream": True,
            "messages": [{"role": "user", "content": PROMPT}]}  # fmt: skip
    started = time.monotonic()
    run.requests += 1
    try:
        async with client.stream(
            "POST", gateway + "/v1/chat/completions", json=body,
            headers={"Authorization": f"Bearer {KEY}"},
        ) as answer:  # fmt: skip
            if answer.status_code != 200:
                run.shed += 1
                await answer.aread()
                return
            first = None
            async for chunk in answer.aiter_bytes():
                if first is None and b'"content"' in chunk:
                    first = time.monotonic() - started
            run.ttft.append(first if first is not None else time.monotonic() - started)
    except httpx.HTTPError:
        run.shed += 1


async def _traffic(gateway: str, start: float, run: Run, seed: int) -> None:
    rng = random.Random(seed)
    tasks = []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        while (now := time.monotonic() - start) < 24 * HOUR_S:
            rate = actual_rate(now / HOUR_S)
            await asyncio.sleep(rng.expovariate(rate))
            tasks.append(asyncio.create_task(_ask(client, gateway, run)))
        await asyncio.gather(*tasks)


async def _day(name: str, pool: Pool, gateway: str) -> Run:
    run = Run(name)
    peak = max(replicas_for(actual_rate(h / 4)) for h in range(96))
    async with httpx.AsyncClient(timeout=5) as client:
        pool.ordered = []
        for url in pool.urls:  # every replica released, whatever the last day left
            await client.post(url + "/_sim/config", json={"healthy": False})
        await _until_warm(client, gateway, 0)
        initial = peak if name == "flat" else replicas_for(expected_rate(0))
        await pool.set(client, initial, warm=True)
        await _until_warm(client, gateway, initial)
    start = time.monotonic()
    await asyncio.gather(_scale(name, pool, gateway, start, run), _traffic(gateway, start, run, 7))
    return run


def _config(port: int, sim_port: int) -> str:
    urls = ", ".join(f'"http://127.0.0.1:{sim_port + i}"' for i in range(REPLICAS))
    return textwrap.dedent(f"""\
        server: {{port: {port}, access_log: false}}
        providers:
          local:
            kind: vllm_pool
            model: sim
            replicas: [{urls}]
            health: {{every_s: 0.2}}
            scrape: {{every_s: 0.2}}
        routes:
          pool: {{targets: [{{provider: local, model: sim}}]}}
        keys:
          - {{name: bench, key: {KEY}}}
        """)


def main() -> None:
    logs = Path("/tmp/spillover-pool-scaling-bench")
    logs.mkdir(exist_ok=True)
    me = [str(ROOT / ".venv/bin/spillover")]
    sim_port, port = free_port(), free_port()
    while any(free_port() == sim_port + i for i in range(1, REPLICAS)):
        sim_port = free_port()
    procs = [spawn([*me, "sim-vllm", "--port", str(sim_port), "--replicas", str(REPLICAS),
                    "--model", "sim", "--kv-blocks", str(KV_BLOCKS), "--block-size", str(BLOCK),
                    "--max-num-seqs", "8", "--step-base-ms", "20"], logs / "sim.log")]  # fmt: skip
    rows = []
    try:
        for i in range(REPLICAS):
            wait(f"http://127.0.0.1:{sim_port + i}", "/health", 30)
        (logs / "gateway.yaml").write_text(_config(port, sim_port))
        procs.append(spawn([*me, "serve", "--config", str(logs / "gateway.yaml"),
                            "--workers", "1"], logs / "gateway.log"))  # fmt: skip
        gateway = f"http://127.0.0.1:{port}"
        wait(gateway, "/health/live", 30)
        pool = Pool([f"http://127.0.0.1:{sim_port + i}" for i in range(REPLICAS)])
        for name in ("flat", "reactive", "predictive"):
            run = asyncio.run(_day(name, pool, gateway))
            rows.append(run)
            print(f"{name}: {run.requests} requests, {run.shed} shed", flush=True)
    finally:
        for proc in procs:
            stop(proc)
    print()
    print("| scaler | requests | shed | TTFT p99 (s) | over the SLO | GPU-hours |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for run in rows:
        ordered = sorted(run.ttft)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else 0.0
        over = sum(t > SLO_TTFT_S for t in run.ttft) + run.shed
        print(
            f"| {run.name} | {run.requests} | {run.shed} ({run.shed / max(1, run.requests):.1%}) "
            f"| {p99:.2f} | {over / max(1, run.requests):.1%} | "
            f"{run.replica_s / HOUR_S:.1f} |"
        )
    for run in rows:
        if run.forecast_error is not None:
            print(
                f"\nThe forecast's error on the day (held out; mean absolute error of each "
                f"hour's peak KV tokens in flight): {run.forecast_error:.1%}"
            )


if __name__ == "__main__":
    main()
