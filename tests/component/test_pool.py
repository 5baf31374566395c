"""The pool in process with a fake prober: the lifecycle (starting → warming → ready →
unhealthy), token-aware choice, leases that give back exactly what they took, the priority
queue, and shedding — in milliseconds, without a replica process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from fallback_engine.load import PoolRequest
from fallback_engine.pool import Pool, PoolShed
from fallback_engine.replica import Replica
from fallback_engine.scrape import Snapshot
from policies.pool import VllmPoolProvider


@dataclass
class FakeProbe:
    """Replicas answer health and warm-up as `healthy` says; scrapes report a KV usage."""

    healthy_urls: set[str]
    kv_usage: dict[str, float] = field(default_factory=dict)
    warmed: list[str] = field(default_factory=list)

    async def healthy(self, replica: Replica) -> bool:
        return replica.url in self.healthy_urls

    async def warm_up(self, replica: Replica) -> bool:
        self.warmed.append(replica.url)
        return True

    async def scrape(self, replica: Replica) -> Snapshot | None:
        return Snapshot(
            at=time.monotonic(),
            kv_usage=self.kv_usage.get(replica.url, 0.1),
            block_size=16,
            num_blocks=1000,
        )


def pool_config(**admission: object) -> VllmPoolProvider:
    return VllmPoolProvider.model_validate(
        {
            "kind": "vllm_pool",
            "model": "m",
            "replicas": ["http://a", "http://b"],
            "health": {"every_s": 0.01, "unhealthy_after": 2},
            "scrape": {"every_s": 0.01, "jitter": 0},
            "routing": {"strategy": "least_tokens"},
            "admission": {"max_waiting": 100, **admission},
        }
    )


async def until(condition: Callable[[], bool], within_s: float = 2.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.005)


async def test_replicas_warm_up_before_rotation_and_leave_it_on_failed_checks() -> None:
    probe = FakeProbe({"http://a", "http://b"})
    pool = Pool("local", pool_config(), probe=probe)
    assert [r.state for r in pool.replicas.values()] == ["starting", "starting"]
    await pool.start()
    try:
        await until(lambda: len(pool.ready()) == 2)
        assert sorted(probe.warmed) == ["http://a", "http://b"]
        probe.healthy_urls.discard("http://a")
        await until(lambda: pool.replicas["http://a"].state == "unhealthy")
        assert [r.url for r in pool.ready()] == ["http://b"]
        probe.healthy_urls.add("http://a")  # back only through warming
        await until(lambda: len(pool.ready()) == 2)
        assert probe.warmed.count("http://a") == 2
    finally:
        await pool.close()


async def test_leases_spread_by_tokens_and_give_back_exactly_what_they_took() -> None:
    pool = Pool("local", pool_config(), probe=FakeProbe({"http://a", "http://b"}))
    await pool.start()
    try:
        await until(lambda: len(pool.ready()) == 2 and all(r.snapshot for r in pool.ready()))
        big = await pool.acquire(PoolRequest(2_000, 100))
        small = [await pool.acquire(PoolRequest(100, 10)) for _ in range(3)]
        assert {lease.base_url for lease in small} == {"http://a", "http://b"} - {big.base_url}
        for lease in [big, *small]:
            lease.first_token()
            lease.release()
            lease.release()  # a second release changes nothing
        for replica in pool.replicas.values():
            assert (replica.outstanding_tokens, replica.outstanding_requests) == (0, 0)
            assert (replica.pending_prefill_tokens, replica.committed_tokens) == (0, 0)
    finally:
        await pool.close()


async def test_a_full_pool_queues_critical_first_and_sheds_what_it_cannot_hold() -> None:
    probe = FakeProbe({"http://a", "http://b"}, kv_usage={"http://a": 0.99, "http://b": 0.99})
    pool = Pool("local", pool_config(queue={"max_size": 4, "max_wait_ms": 2000}), probe=probe)
    await pool.start()
    try:
        await until(lambda: len(pool.ready()) == 2 and all(r.snapshot for r in pool.ready()))
        with pytest.raises(PoolShed) as sheddable:
            await pool.acquire(PoolRequest(100, 10, priority="sheddable"))
        assert sheddable.value.retry_after >= 1
        with pytest.raises(PoolShed) as huge:
            await pool.acquire(PoolRequest(20_000, 10))
        assert huge.value.reason == "context_too_large"
        served: list[str] = []
        standard = asyncio.create_task(pool.acquire(PoolRequest(100, 10)))
        standard.add_done_callback(lambda _: served.append("standard"))
        await asyncio.sleep(0.02)
        critical = asyncio.create_task(pool.acquire(PoolRequest(100, 10, priority="critical")))
        critical.add_done_callback(lambda _: served.append("critical"))
        await asyncio.sleep(0.05)
        assert served == []
        probe.kv_usage["http://a"] = 0.1  # room again at a, after the next scrape
        leases = await asyncio.wait_for(asyncio.gather(critical, standard), 2)
        assert served == ["critical", "standard"]  # it came later, and went first
        assert {lease.base_url for lease in leases} == {"http://a"}
        for lease in leases:
            lease.release()
    finally:
        await pool.close()
