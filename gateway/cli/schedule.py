"""`spillover plan --schedule`: the pool's forecast for the next day or week, and per hour the
cheapest GPU type and replica count that hold it, beside a flat plan sized for the peak."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from policies.forecast import SLOT_S, SLOTS_PER_HOUR, fit, held_out_error, slot_loads, slot_of
from policies.pool import VllmPoolProvider
from policies.schedule import Schedule, plan

console = Console(soft_wrap=True)


async def _observed(url: str, since: float, until: float, pool: str) -> dict[int, Any]:
    from gateway.accounting.capacity import read_requests  # the SQL toolkit: only here

    requests = [
        (r.start, r.end, r.tokens) async for r in read_requests(url, since, until, (), (pool,))
    ]
    return slot_loads(requests)


def schedule(
    url: str, pool_name: str, pool: VllmPoolProvider, since: float, days: int, as_json: bool
) -> None:
    """Print the schedule for the `days` after now, from the ledger since `since`."""
    capacity = pool.capacity
    if capacity is None:
        raise ValueError(
            f"provider {pool_name!r} has no `capacity:` (GPU types and the model's needs)"
        )
    now = time.time()
    observed = asyncio.run(_observed(url, since, now, pool_name))
    start = slot_of(now) + 1
    model = fit(observed, start)
    slots = list(range(start, start + days * 24 * SLOTS_PER_HOUR))
    loads = [model.at(s) for s in slots]
    result = plan(capacity, slots, loads, pool.admission.max_kv_usage)
    error = held_out_error(observed)
    if as_json:
        print(json.dumps(_as_dict(result, model.factor, error, loads), indent=2))
        return
    _show(result, model.factor, error, loads)


def _hours(result: Schedule) -> list[tuple[int, str, int]]:
    """Per hour: its first slot, and the largest choice of its slots."""
    out = []
    for i in range(0, len(result.slots), SLOTS_PER_HOUR):
        choices = result.choices[i : i + SLOTS_PER_HOUR]
        top = max(choices, key=lambda c: (c.replicas, c.gpu))
        out.append((result.slots[i], top.gpu, top.replicas))
    return out


def _show(result: Schedule, factor: float, error: float | None, loads: list[Any]) -> None:
    said = "too little history (a week and a day)" if error is None else f"{error:.1%}"
    console.print(
        f"forecast: weekly profile x trend {factor:.2f}; error on the last day held out "
        f"(hourly peak KV tokens, mean absolute): {said}"
    )
    table = Table("hour (UTC)", "KV tokens p99", "tokens/s p99", "GPU", "replicas")
    for i, (slot, gpu, replicas) in enumerate(_hours(result)):
        hour = loads[i * SLOTS_PER_HOUR : (i + 1) * SLOTS_PER_HOUR]
        stamp = time.strftime("%a %H:%M", time.gmtime(slot * SLOT_S))
        table.add_row(
            stamp, f"{max(x.kv_tokens for x in hour):,.0f}",
            f"{max(x.tokens_per_s for x in hour):,.0f}", gpu, str(replicas),
        )  # fmt: skip
    console.print(table)
    floor, flat = result.warm_floor, result.flat
    console.print(f"warm floor: {floor.replicas} x {floor.gpu} (off-peak demand plus the margin)")
    console.print(
        f"schedule: ${result.cost_micro_usd / 1e6:,.2f}; flat at the peak ({flat.replicas} x "
        f"{flat.gpu}): ${result.flat_cost_micro_usd / 1e6:,.2f}; saved {result.saving_share:.0%}"
    )


def _as_dict(
    result: Schedule, factor: float, error: float | None, loads: list[Any]
) -> dict[str, Any]:
    return {
        "trend": factor,
        "held_out_error": error,
        "slots": [
            {
                "start": slot * SLOT_S,
                "gpu": c.gpu,
                "replicas": c.replicas,
                "kv_tokens": load.kv_tokens,
                "tokens_per_s": load.tokens_per_s,
            }
            for slot, c, load in zip(result.slots, result.choices, loads, strict=True)
        ],
        "warm_floor": {"gpu": result.warm_floor.gpu, "replicas": result.warm_floor.replicas},
        "flat": {"gpu": result.flat.gpu, "replicas": result.flat.replicas},
        "cost_micro_usd": result.cost_micro_usd,
        "flat_cost_micro_usd": result.flat_cost_micro_usd,
    }
