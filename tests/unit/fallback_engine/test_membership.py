"""The pool's membership under discovery: a replica that leaves the list while a health check
is under way stays out of rotation (it is drained, never warmed back in)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from fallback_engine.listing import write_listing
from fallback_engine.membership import Membership
from fallback_engine.replica import Replica
from fallback_engine.scrape import Snapshot
from policies.pool import VllmPoolProvider

URL = "http://127.0.0.1:8001"


class SlowProbe:
    """Answers healthy only when let go, so discovery can change while it is asked."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()
        self.warmed: list[str] = []

    async def healthy(self, replica: Replica) -> bool:
        self.asked.set()
        await self.answer.wait()
        return True

    async def warm_up(self, replica: Replica) -> bool:
        self.warmed.append(replica.url)
        return True

    async def scrape(self, replica: Replica) -> Snapshot | None:
        return None


async def _until(done: Callable[[], bool]) -> None:
    for _ in range(500):
        if done():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 5 s")


def _members(path: Path, moves: list[tuple[str, str]]) -> Membership:
    pool = VllmPoolProvider.model_validate(
        {"kind": "vllm_pool", "model": "m", "discover": {"file": str(path), "every_s": 0.01}}
    )
    return Membership("local", pool, None, lambda r, state: moves.append((r.url, state)))


def test_a_replica_unlisted_during_its_health_check_is_drained_not_warmed(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[tuple[str, str]], list[str], bool]:
        path = tmp_path / "replicas.json"
        write_listing(path, [URL])
        moves: list[tuple[str, str]] = []
        members = _members(path, moves)
        probe = SlowProbe()
        discovery = asyncio.create_task(members.discover_loop())
        await _until(lambda: URL in members.replicas)
        check = asyncio.create_task(members.check(probe, members.replicas[URL]))
        await probe.asked.wait()
        write_listing(path, [])  # the supervisor drains it while the check waits
        await _until(lambda: (URL, "draining") in moves)
        probe.answer.set()
        await check
        await asyncio.sleep(0.05)  # more discovery passes: still gone, nothing new
        discovery.cancel()
        await members.check(probe, members.replicas[URL])  # nothing in flight: removed
        return moves, probe.warmed, URL in members.replicas

    moves, warmed, still_known = asyncio.run(scenario())
    assert moves == [(URL, "draining")]
    assert warmed == []
    assert not still_known


def test_a_replica_listed_again_after_it_left_starts_afresh(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[tuple[str, str]], str]:
        path = tmp_path / "replicas.json"
        write_listing(path, [URL])
        moves: list[tuple[str, str]] = []
        members = _members(path, moves)
        discovery = asyncio.create_task(members.discover_loop())
        probe = SlowProbe()
        probe.answer.set()
        await _until(lambda: URL in members.replicas)
        await members.check(probe, members.replicas[URL])
        write_listing(path, [])
        await _until(lambda: (URL, "draining") in moves)
        await members.check(probe, members.replicas[URL])  # removed
        write_listing(path, [URL])
        await _until(lambda: URL in members.replicas)
        discovery.cancel()
        return moves, members.replicas[URL].state

    moves, state = asyncio.run(scenario())
    assert moves == [(URL, "warming"), (URL, "ready"), (URL, "draining")]
    assert state == "starting"
