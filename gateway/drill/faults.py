"""Fault injection for failover drills: a table of active faults (set through
`/admin/faults`, each expiring by itself) and a provider wrapper that applies them.

Only built when the config says `drills: {enabled: true}`. A fault matches by route,
provider and model (each optional), fires for a share of the matching requests, and with
`scope` only for requests carrying `x-spillover-drill: <scope>` — so a drill can run on a
slice of production without touching real users.

    error            the target answers `status` (5xx: retryable, fail over)
    rate_limit       429 with Retry-After
    latency          `latency_ms` added before the answer (or the first event), and per
                     event of a stream with `per_chunk: true`
    hang             no answer until the attempt's own timeout
    connection_reset the connection drops before an answer
    stream_cut       a stream breaks after `after_chunks` events
    kv_pressure      the self-hosted pool reports itself full (admission sheds)
    redis_down       every Redis call of this gateway process fails as if Redis were
                     unreachable (routing, limits and budgets fall back to local state);
                     process-wide, so it takes no route, provider, model, scope or percent
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from gateway.errors import (
    ConnectFailed,
    Shed,
    Timeout,
    UpstreamFailure,
    UpstreamRateLimited,
    UpstreamStatusError,
)
from gateway.providers.base import (
    Provider,
    UpstreamCall,
    UpstreamResponse,
    UpstreamStream,
    WrappedStream,
)
from policies.schema_base import Strict

if TYPE_CHECKING:
    from gateway.keys import Principal

FaultKind = Literal[
    "error",
    "rate_limit",
    "latency",
    "hang",
    "connection_reset",
    "stream_cut",
    "kv_pressure",
    "redis_down",
]


class FaultSpec(Strict):
    kind: FaultKind
    route: str | None = None
    provider: str | None = None
    model: str | None = None
    percent: float = Field(100.0, ge=0, le=100)
    duration_s: float = Field(60.0, gt=0, le=86_400)
    scope: str | None = None  # only requests with x-spillover-drill: <scope>
    status: int = Field(503, ge=400, le=599)
    retry_after_s: float = Field(1.0, ge=0)
    latency_ms: float = Field(0.0, ge=0)
    per_chunk: bool = False
    after_chunks: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _bounded_by_its_duration(self) -> FaultSpec:
        # What a fault causes must end with it: no wait longer than the fault itself.
        asked = "retry_after_s" in self.model_fields_set
        if (
            asked
            and self.kind in ("rate_limit", "kv_pressure")
            and self.retry_after_s > self.duration_s
        ):
            raise ValueError("retry_after_s must not exceed duration_s")
        if self.latency_ms > self.duration_s * 1000:
            raise ValueError("latency_ms must not exceed duration_s")
        return self

    @model_validator(mode="after")
    def _redis_down_is_process_wide(self) -> FaultSpec:
        narrowed = self.route or self.provider or self.model or self.scope or self.percent < 100
        if self.kind == "redis_down" and narrowed:
            raise ValueError(
                "redis_down takes this gateway's Redis away for every request: it has no "
                "route, provider, model, scope or percent"
            )
        return self


class Fault:
    def __init__(self, fault_id: str, spec: FaultSpec, now: float) -> None:
        self.id = fault_id
        self.spec = spec
        self.started = now
        self.expires = now + spec.duration_s
        self.fired = 0

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "id": self.id,
            **self.spec.model_dump(),
            "remaining_s": round(max(0.0, self.expires - now), 3),
            "fired": self.fired,
        }


class FaultTable:
    def __init__(self, seed: int | None = None) -> None:
        # Keys a console drill mints for its own traffic (digest → principal), for its run only.
        self.minted_keys: dict[str, Principal] = {}
        self._faults: dict[str, Fault] = {}
        self._ids = itertools.count(1)
        self._rng = random.Random(seed)

    def _prune(self, now: float) -> None:
        for fault_id in [f.id for f in self._faults.values() if f.expires <= now]:
            del self._faults[fault_id]

    def add(self, spec: FaultSpec) -> Fault:
        now = time.monotonic()
        fault = Fault(f"f{next(self._ids)}", spec, now)
        self._faults[fault.id] = fault
        return fault

    def remove(self, fault_id: str | None = None) -> int:
        if fault_id is None:
            count = len(self._faults)
            self._faults.clear()
            return count
        return 1 if self._faults.pop(fault_id, None) is not None else 0

    def active(self) -> list[Fault]:
        self._prune(time.monotonic())
        return list(self._faults.values())

    def redis_down(self) -> Fault | None:
        """The active `redis_down` fault, if any."""
        if not self._faults:
            return None
        self._prune(time.monotonic())
        return next((f for f in self._faults.values() if f.spec.kind == "redis_down"), None)

    def redis_down_now(self) -> bool:
        return self.redis_down() is not None

    def pick(self, route: str, provider: str, model: str, drill: str | None) -> Fault | None:
        if not self._faults:
            return None
        self._prune(time.monotonic())
        for fault in self._faults.values():
            s = fault.spec
            if s.kind != "redis_down" and (
                (s.route is None or s.route == route)
                and (s.provider is None or s.provider == provider)
                and (s.model is None or s.model == model)
                and (s.scope is None or s.scope == drill)
                and (s.percent >= 100 or self._rng.random() * 100 < s.percent)
            ):
                fault.fired += 1
                return fault
        return None


class FaultyProvider(Provider):
    """A provider with the fault table in front of it."""

    def __init__(
        self, inner: Provider, table: FaultTable, on_fire: Callable[[str, str], None]
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self.supports = inner.supports
        self.native_protocols = inner.native_protocols
        self.address = inner.address
        self._table = table
        self._on_fire = on_fire

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    def adopt(self, previous: Provider) -> None:
        self.inner.adopt(previous)

    def unwrapped(self) -> Provider:
        return self.inner.unwrapped()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)  # the pool adapter's `pool`, `price`, …

    async def send(self, call: UpstreamCall) -> UpstreamResponse | UpstreamStream:
        fault = self._table.pick(call.route, self.name, call.model, call.drill)
        if fault is None:
            return await self.inner.send(call)
        spec = fault.spec
        call.faults.append(f"{fault.id}:{spec.kind}")
        self._on_fire(spec.kind, self.name)
        failure = _failure(fault, time.monotonic())
        if failure is not None:
            # A scoped fault is the drill's traffic alone: no breaker or cool-down for all.
            failure.private = spec.scope is not None
            raise failure
        # A slow upstream is bounded by the attempt's own timeout, as a real one would be.
        limit = call.timeouts.first_byte if call.stream else call.timeouts.total
        phase: Literal["first_byte", "total"] = "first_byte" if call.stream else "total"
        if spec.kind == "hang" or (
            spec.kind == "latency" and not spec.per_chunk and spec.latency_ms / 1000 >= limit
        ):
            await asyncio.sleep(limit)
            raise Timeout(f"injected fault {fault.id}: no answer within {limit:.2f} s", phase=phase)
        if spec.kind == "latency" and not spec.per_chunk:
            await asyncio.sleep(spec.latency_ms / 1000)
        result = await self.inner.send(call)
        if isinstance(result, UpstreamStream) and spec.kind in ("stream_cut", "latency"):
            return _FaultyStream(result, fault.id, spec)
        return result


def _failure(fault: Fault, now: float) -> UpstreamFailure | None:
    """The failure an answer-replacing fault raises; a Retry-After never outlives it."""
    spec = fault.spec
    retry_after = max(0.0, min(spec.retry_after_s, fault.expires - now))
    if spec.kind == "error":
        return UpstreamStatusError(f"injected fault {fault.id}: {spec.status}", status=spec.status)
    if spec.kind == "rate_limit":
        return UpstreamRateLimited(f"injected fault {fault.id}: 429", retry_after=retry_after)
    if spec.kind == "connection_reset":
        return ConnectFailed(f"injected fault {fault.id}: connection reset")
    if spec.kind == "kv_pressure":
        return Shed(
            f"injected fault {fault.id}: pool full", reason="kv_full", retry_after=retry_after
        )
    return None


class _FaultyStream(WrappedStream):
    def __init__(self, inner: UpstreamStream, fault_id: str, spec: FaultSpec) -> None:
        super().__init__(inner)
        self._id = fault_id
        self._spec = spec

    async def _events(self) -> AsyncIterator[bytes]:
        count = 0
        async for event in self._inner:
            if self._spec.kind == "stream_cut" and count >= self._spec.after_chunks:
                await self._inner.aclose()
                raise ConnectFailed(f"injected fault {self._id}: stream cut after {count}")
            if self._spec.kind == "latency" and self._spec.per_chunk:
                await asyncio.sleep(self._spec.latency_ms / 1000)
            count += 1
            yield event
