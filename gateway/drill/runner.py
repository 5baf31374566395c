"""Run a drill: drive the scenario's traffic at the gateway, apply its fault timeline through
`/admin/faults`, sample the gateway's metrics, and measure what the clients saw."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
from prometheus_client.parser import text_string_to_metric_families

from gateway.drill.scenario import Scenario
from policies.schema import WireProtocol


@dataclass
class DrillAnswer:
    """What the client of one drill request saw."""

    t: float  # seconds since the drill started
    latency_s: float
    status: int  # 0: no HTTP answer
    provider: str
    error: bool  # what the client saw: a non-200, or a stream that ended in an error event


@dataclass
class FaultWindow:
    start: float
    end: float
    kind: str
    provider: str | None
    route: str | None


@dataclass
class DrillRun:
    scenario: Scenario
    started_wall: float
    outcomes: list[DrillAnswer] = field(default_factory=list)
    windows: list[FaultWindow] = field(default_factory=list)
    dropped: int = 0  # arrivals the generator could not start (its concurrency bound)
    breaker_opened_at: float | None = None  # first time a faulted target's breaker opened
    # A shared-state (Redis) fault: when the gateway first said it runs on local state, and
    # when, after the fault, it said it shares state again.
    state_local_at: float | None = None
    state_shared_again_at: float | None = None
    ledger_rows: int | None = None
    baseline_cost_per_request: float | None = None
    fault_cost_per_request: float | None = None
    drill_id: str = ""


class Gateway:
    """The admin and client sides of the gateway under drill."""

    def __init__(self, url: str, admin_key: str, key: str) -> None:
        self.url = url.rstrip("/")
        self._admin = {"Authorization": f"Bearer {admin_key}"}
        self.key = key

    async def inject(self, client: httpx.AsyncClient, spec: dict[str, Any]) -> None:
        reply = await client.post(self.url + "/admin/faults", json=spec, headers=self._admin)
        if reply.status_code != 201:
            try:
                detail = reply.json().get("detail", reply.text)
            except ValueError:
                detail = reply.text
            raise RuntimeError(f"the gateway refused the {spec['kind']} fault: {detail}")

    async def clear(self, client: httpx.AsyncClient) -> None:
        await client.delete(self.url + "/admin/faults", headers=self._admin)

    async def check(self, client: httpx.AsyncClient) -> None:
        reply = await client.get(self.url + "/admin/faults", headers=self._admin)
        if reply.status_code != 200:
            raise RuntimeError(f"/admin/faults answered {reply.status_code}: {reply.text}")

    async def breakers_open(self, client: httpx.AsyncClient, providers: set[str]) -> bool:
        text = (await client.get(self.url + "/metrics")).text
        for family in text_string_to_metric_families(text):
            if family.name == "spillover_breaker_state":
                for sample in family.samples:
                    if sample.labels.get("provider") in providers and sample.value == 2:
                        return True
        return False

    async def shares_state(self, client: httpx.AsyncClient) -> bool | None:
        """Whether routing state and limits are shared through Redis now (None: the gateway
        has no shared state)."""
        text = (await client.get(self.url + "/metrics")).text
        values = [
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name in ("spillover_state_backend_up", "spillover_limits_shared")
            for sample in family.samples
        ]
        return all(v == 1 for v in values) if values else None

    async def spend(
        self, client: httpx.AsyncClient, since: float, until: float
    ) -> dict[str, float]:
        reply = await client.get(
            self.url + "/admin/spend",
            params={"since": _iso(since), "until": _iso(until), "by": "route"},
            headers=self._admin,
        )
        reply.raise_for_status()
        rows = reply.json()["rows"]
        return {
            "requests": float(sum(r["requests"] for r in rows)),
            "cost_usd": float(sum(r.get("spend_usd") or 0.0 for r in rows)),
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


async def _request(session: aiohttp.ClientSession, gw: Gateway, run: DrillRun, t0: float,
                   stream: bool, prompt: str) -> None:  # fmt: skip
    traffic = run.scenario.traffic
    path, headers, body = _speak(traffic.protocol, gw.key, traffic.route, traffic.max_tokens,
                                 prompt)  # fmt: skip
    headers["x-spillover-drill"] = run.drill_id
    if traffic.budget_ms:
        headers["x-spillover-budget-ms"] = str(traffic.budget_ms)
    if stream:
        body["stream"] = True
    started = time.perf_counter()
    status, provider, error = 0, "", True
    try:
        async with session.post(gw.url + path, json=body, headers=headers) as r:
            status = r.status
            provider = r.headers.get("x-spillover-provider", "")
            data = await r.read()
            error = status != 200 or not _whole(traffic.protocol, data, stream)
    except (aiohttp.ClientError, TimeoutError):
        pass
    run.outcomes.append(DrillAnswer(started - t0, time.perf_counter() - started, status, provider,
                                error))  # fmt: skip


def _speak(
    protocol: WireProtocol, key: str, route: str, max_tokens: int, prompt: str
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The path, headers and body a client of `protocol` sends."""
    if protocol == "anthropic":
        body = {"model": route, "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": prompt}]}  # fmt: skip
        return "/v1/messages", {"x-api-key": key, "anthropic-version": "2023-06-01"}, body
    bearer = {"Authorization": f"Bearer {key}"}
    if protocol == "responses":
        body = {"model": route, "max_output_tokens": max_tokens, "input": prompt, "store": False}
        return "/v1/responses", bearer, body
    body = {"model": route, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": prompt}]}  # fmt: skip
    return "/v1/chat/completions", bearer, body


def _whole(protocol: WireProtocol, data: bytes, stream: bool) -> bool:
    """What a client of the protocol would take as a whole answer: a message or a Response,
    or a stream that ends the protocol's way and carries no error event."""
    last = data.rstrip().rsplit(b"\n", 1)[-1]
    if protocol == "anthropic":
        if stream:
            return b"event: error" not in data and b'"message_stop"' in last
        return data.startswith(b"{") and b'"type":"message"' in data
    if protocol == "responses":
        if stream:
            return b"response.failed" not in data and b'"response.completed"' in last
        return data.startswith(b"{") and b'"status":"completed"' in data
    return not (stream and b'"error"' in data)


async def drive(scenario: Scenario, gw: Gateway, progress: Callable[[float, DrillRun], None],
                seed: int = 0) -> DrillRun:  # fmt: skip
    run = DrillRun(scenario, time.time(), drill_id=f"drill-{scenario.name}-{uuid.uuid4().hex[:8]}")
    traffic = scenario.traffic
    rng = random.Random(seed)
    faulted = {s.fault.provider for s in scenario.steps if s.fault.provider}
    async with httpx.AsyncClient(timeout=10) as admin:
        await gw.check(admin)
        await gw.clear(admin)
        t0 = time.perf_counter()

        async def timeline() -> None:
            for step in sorted(scenario.steps, key=lambda s: s.at_s):
                await asyncio.sleep(max(0.0, t0 + step.at_s - time.perf_counter()))
                spec = step.fault.model_dump(exclude_none=True)
                await gw.inject(admin, spec)
                now = time.perf_counter() - t0
                run.windows.append(FaultWindow(now, now + step.fault.duration_s, step.fault.kind,
                                               step.fault.provider, step.fault.route))  # fmt: skip

        async def sampler() -> None:
            while True:
                watching = run.windows and run.breaker_opened_at is None and faulted
                if watching and await gw.breakers_open(admin, faulted):
                    run.breaker_opened_at = time.perf_counter() - t0
                await _watch_state(run, gw, admin, time.perf_counter() - t0)
                progress(time.perf_counter() - t0, run)
                await asyncio.sleep(0.25)

        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            limit = asyncio.Semaphore(traffic.concurrency)
            tasks: set[asyncio.Task[None]] = set()

            async def bounded(stream: bool, prompt: str) -> None:
                async with limit:
                    await _request(session, gw, run, t0, stream, prompt)

            background = [asyncio.create_task(timeline()), asyncio.create_task(sampler())]
            at = 0.0
            while True:
                at += rng.expovariate(traffic.rate)
                if at >= traffic.duration_s or _failed(background[0]):
                    break
                await asyncio.sleep(max(0.0, t0 + at - time.perf_counter()))
                if limit.locked():
                    run.dropped += 1
                    continue
                prompt = "Drill traffic: " + "status report please. " * (traffic.prompt_chars // 22)
                task = asyncio.create_task(bounded(rng.random() < traffic.stream_share, prompt))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
            if (failed := _failed(background[0])) is not None:
                background[1].cancel()
                await gw.clear(admin)
                raise failed  # a fault the gateway would not take: no drill to judge
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
        await gw.clear(admin)
        progress(traffic.duration_s, run)
        await asyncio.sleep(1.5)  # the ledger writes in batches
        await _account(run, gw, admin)
    return run


def _failed(task: asyncio.Task[None]) -> BaseException | None:
    return task.exception() if task.done() and not task.cancelled() else None


async def _watch_state(run: DrillRun, gw: Gateway, admin: httpx.AsyncClient, now: float) -> None:
    outages = [w for w in run.windows if w.kind == "redis_down"]
    if not outages or run.state_shared_again_at is not None:
        return
    shared = await gw.shares_state(admin)
    if shared is False and run.state_local_at is None:
        run.state_local_at = now
    elif shared and run.state_local_at is not None and now >= max(w.end for w in outages):
        run.state_shared_again_at = now


async def _account(run: DrillRun, gw: Gateway, admin: httpx.AsyncClient) -> None:
    """Ledger rows for the drill's time span, and the cost per request before and during
    the faults."""
    start = run.started_wall
    end = start + run.scenario.traffic.duration_s + 30
    try:
        total = await gw.spend(admin, start - 0.5, end)
        run.ledger_rows = int(total["requests"])
        if run.windows:
            first = start + run.windows[0].start
            last = start + max(w.end for w in run.windows)
            before = await gw.spend(admin, start - 0.5, first)
            during = await gw.spend(admin, first, last)
            if before["requests"]:
                run.baseline_cost_per_request = before["cost_usd"] / before["requests"]
            if during["requests"]:
                run.fault_cost_per_request = during["cost_usd"] / during["requests"]
    except (httpx.HTTPError, KeyError, ValueError):
        run.ledger_rows = None
