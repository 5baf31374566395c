"""The stored-responses store on both databases the ledger runs on (SQLite and the real
PostgreSQL): a chain read back oldest first in one query, owners apart, deletion, expiry,
and a database that is away answered as our 503, never a crash."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import (
    GatewayRateLimited,
    LedgerUnavailable,
    NotFound,
    PayloadTooLarge,
    StoredQuotaReached,
)
from gateway.state.responses import History, ResponseStore
from gateway.state.stored_response import StoredResponse
from policies.schema import ResponsesConfig


def _store(url: str, **settings: Any) -> ResponseStore:
    return ResponseStore(url, ResponsesConfig(retention_days=60 / 86_400, **settings))


def _items(history: History | None) -> list[dict[str, Any]] | None:
    return None if history is None else history.items


def _postgres_url() -> str:
    return os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    return _postgres_url()


def _turn(rid: str, owner: str, previous: str | None, said: str, at: float) -> StoredResponse:
    given = [{"id": f"in-{rid}", "type": "message", "role": "user", "content": said}]
    answered = [{"id": f"out-{rid}", "type": "message", "role": "assistant", "content": said + "!"}]
    return StoredResponse(
        rid, owner, at, previous, given, answered, {"id": rid, "output": answered}
    )


async def _exercise(url: str) -> dict[str, Any]:
    store = _store(url)
    run = uuid.uuid4().hex[:8]
    ids = [f"resp_{run}_{i}" for i in range(3)]
    now = time.time()
    try:
        previous = None
        for i, rid in enumerate(ids):
            await store.save(_turn(rid, "team-a", previous, f"turn {i}", now))
            previous = rid
        history = _items(await store.history(ids[-1], "team-a"))
        theirs = _items(await store.history(ids[-1], "team-b"))
        middle = _items(await store.history(ids[1], "team-a"))
        got = await store.get(ids[0], "team-a")
        not_theirs = await store.get(ids[0], "team-b")
        deleted_by_other = await store.delete(ids[0], "team-b")
        deleted = await store.delete(ids[2], "team-a")
        after_delete = await store.get(ids[2], "team-a")
        old = f"resp_{run}_old"
        await store.save(_turn(old, "team-a", None, "long ago", now - 120))  # past retention
        expired = await store.get(old, "team-a"), await store.history(old, "team-a")
    finally:
        await store.close()
    return {
        "history": history, "theirs": theirs, "middle": middle, "got": got,
        "not_theirs": not_theirs, "deleted_by_other": deleted_by_other, "deleted": deleted,
        "after_delete": after_delete, "expired": expired,
    }  # fmt: skip


def test_chains_owners_deletion_and_expiry(url: str) -> None:
    seen = asyncio.run(_exercise(url))
    contents = [item["content"] for item in seen["history"]]
    assert contents == ["turn 0", "turn 0!", "turn 1", "turn 1!", "turn 2", "turn 2!"]
    assert [i["content"] for i in seen["middle"]] == ["turn 0", "turn 0!", "turn 1", "turn 1!"]
    assert seen["theirs"] is None and seen["not_theirs"] is None
    assert seen["got"] is not None and seen["got"].input_items[0]["content"] == "turn 0"
    assert seen["deleted_by_other"] is False and seen["deleted"] is True
    assert seen["after_delete"] is None
    assert seen["expired"] == (None, None)


def test_a_database_that_is_away_is_our_503(tmp_path: Path) -> None:
    async def away() -> None:
        store = _store("postgresql://postgres@127.0.0.1:1/none")
        try:
            with pytest.raises(LedgerUnavailable):
                await store.history("resp_x", "team-a")
            with pytest.raises(LedgerUnavailable):
                await store.save(_turn("resp_x", "team-a", None, "x", time.time()))
        finally:
            await store.close()

    asyncio.run(away())


def test_a_chain_past_its_bound_is_refused_not_loaded(tmp_path: Path) -> None:
    async def long_chain() -> None:
        store = _store(f"sqlite:///{tmp_path / 's.sqlite'}", max_history_bytes=64 * 1024)
        try:
            previous = None
            for i in range(4):
                rid = f"resp_long_{i}"
                await store.save(_turn(rid, "team-a", previous, "x" * 16_000, time.time()))
                previous = rid
            assert await store.history("resp_long_0", "team-a") is not None  # one turn fits
            with pytest.raises(PayloadTooLarge):
                await store.history("resp_long_3", "team-a")
        finally:
            await store.close()

    asyncio.run(long_chain())


def test_a_cut_chain_is_an_error_never_a_shorter_conversation(url: str) -> None:
    """An expired or deleted earlier turn was skipped (expiry was checked on the first row
    only), sending the model a conversation with a hole in it."""

    async def cut() -> None:
        store, run, now = _store(url), uuid.uuid4().hex[:8], time.time()
        try:
            await store.save(_turn(f"resp_{run}_0", "team-a", None, "old", now - 120))
            await store.save(_turn(f"resp_{run}_1", "team-a", f"resp_{run}_0", "new", now))
            with pytest.raises(NotFound, match="expired or was deleted"):
                await store.history(f"resp_{run}_1", "team-a")
            await store.save(_turn(f"resp_{run}_2", "team-a", None, "a", now))
            await store.save(_turn(f"resp_{run}_3", "team-a", f"resp_{run}_2", "b", now))
            await store.delete(f"resp_{run}_2", "team-a")
            with pytest.raises(NotFound, match="expired or was deleted"):
                await store.history(f"resp_{run}_3", "team-a")
            assert await store.history("resp_\x00nul", "team-a") is None  # never asked
            assert await store.get("resp_\x00nul", "team-a") is None
        finally:
            await store.close()

    asyncio.run(cut())


def test_histories_in_flight_and_stored_responses_are_bounded(tmp_path: Path) -> None:
    async def bounded() -> None:
        store = _store(
            f"sqlite:///{tmp_path / 's.sqlite'}", max_history_bytes=64 * 1024,
            max_history_bytes_in_flight=128 * 1024, max_stored_per_owner=3,
        )  # fmt: skip
        try:
            for owner in ("team-a", "team-b", "team-c"):
                await store.save(_turn(f"resp_{owner}", owner, None, "x" * 15_000, time.time()))
            held = [await store.history("resp_team-a", "team-a")]
            held.append(await store.history("resp_team-b", "team-b"))
            with pytest.raises(GatewayRateLimited) as busy:  # the process-wide budget
                await store.history("resp_team-c", "team-c")
            assert busy.value.retry_after > 0
            for history in held:
                assert history is not None
                store.release(history)
            third = await store.history("resp_team-c", "team-c")  # room again
            assert third is not None
            with pytest.raises(GatewayRateLimited):  # one owner: a quarter of the budget
                await store.history("resp_team-c", "team-c")
            store.release(third)
            for i in range(2):
                await store.admit_storing("team-a")
                await store.save(_turn(f"resp_a{i}", "team-a", None, "x", time.time()))
            with pytest.raises(StoredQuotaReached):
                await store.admit_storing("team-a")
            await store.admit_storing("team-b")  # another owner's quota is its own
        finally:
            await store.close()

    asyncio.run(bounded())
