"""Stored Responses (OpenAI's `store: true`): what a `previous_response_id` chain needs — each
response's input and output items — kept by the gateway itself in the ledger's database, so
a chain goes on whichever target served each turn, across failovers. A response belongs to
its owner (`team:<name>`, else `key:<name>`): anyone else asking for it gets a 404. What a
request may load and what an owner may keep are bounded (`responses.*`). Rows expire
after `responses.retention_days` and are pruned as new ones arrive. The database is reached
at the store's first use (`gateway.state.responses_sql`), not at start."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.errors import (
    GatewayRateLimited,
    LedgerUnavailable,
    PayloadTooLarge,
    StoredQuotaReached,
)
from gateway.state.stored_response import StoredResponse
from policies.schema import ResponsesConfig

if TYPE_CHECKING:
    from gateway.state.responses_sql import SqlResponses


@dataclass(frozen=True, slots=True)
class History:
    """A chain's items, loaded: `size` stored bytes held from the in-flight budget until
    `ResponseStore.release`."""

    owner: str
    size: int
    items: list[dict[str, Any]]


class HeavyRequest(Exception):
    """Not an error: this request's conversation is long enough for the heavy lane
    (`gateway.http.heavy_lane`), which the worker hands the request to, as read (`body`)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"a {size}-byte conversation: for the heavy lane")
        self.body = b""


class ResponseStore:
    def __init__(self, url: str, config: ResponsesConfig) -> None:
        self.for_heavy_lane: Callable[[int], bool] | None = None  # set on the workers
        self._url = url
        self._config = config
        self._held = 0  # stored bytes of histories loaded by requests still in flight
        self._held_by: dict[str, int] = {}  # … by owner
        self._sql: SqlResponses | None = None
        self._opening = asyncio.Lock()

    def configure(self, config: ResponsesConfig) -> None:
        self._config = config

    @property
    def _retention_s(self) -> float:
        return self._config.retention_days * 86_400

    async def _store(self) -> SqlResponses:
        """The SQL store, made and its table created at the first call; a database that is
        away is our 503 (LedgerUnavailable), tried again at the next call."""
        if self._sql is not None:
            return self._sql
        async with self._opening:
            if self._sql is None:
                from gateway.state.responses_sql import SqlResponses

                sql = SqlResponses(self._url)
                try:
                    await sql.create()
                except BaseException:
                    await sql.close()
                    raise
                self._sql = sql
            return self._sql

    async def close(self) -> None:
        if self._sql is not None:
            await self._sql.close()
            self._sql = None

    async def save(self, stored: StoredResponse) -> None:
        await (await self._store()).save(stored, self._retention_s)

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        if not _plausible(response_id):
            return None
        return await (await self._store()).get(response_id, owner)

    async def delete(self, response_id: str, owner: str) -> bool:
        if not _plausible(response_id):
            return False
        return await (await self._store()).delete(response_id, owner)

    async def history(self, response_id: str, owner: str) -> History | None:
        """Every item of the chain ending at `response_id`, oldest first (each turn's input,
        then its output); None when the id is not the owner's. Bounded twice before it is
        loaded: per request (413) and across the requests in flight (429)."""
        if not _plausible(response_id):
            return None
        store = await self._store()
        chain = await store.chain(response_id, owner)
        if chain is None:
            return None
        ids, size = chain
        limit = self._config.max_history_bytes
        if size > limit:
            raise PayloadTooLarge(
                f"the conversation behind previous_response_id holds {size:,} bytes, over "
                f"responses.max_history_bytes ({limit:,}): start a new one"
            )
        if self.for_heavy_lane is not None and self.for_heavy_lane(size):
            raise HeavyRequest(size)
        self._hold(owner, size)
        history = History(owner, size, [])
        try:
            history.items.extend(await store.load(ids))
        except BaseException:
            self.release(history)
            raise
        return history

    def _hold(self, owner: str, size: int) -> None:
        """Take `size` from the in-flight budget; one owner may hold a quarter of it, so a
        tenant's long conversations never crowd out everyone else's. A history alone always
        fits."""
        budget = self._config.max_history_bytes_in_flight
        owners = self._held_by.get(owner, 0)
        if (self._held and self._held + size > budget) or (owners and owners + size > budget // 4):
            raise GatewayRateLimited(
                "too many long conversations are being served right now: try again shortly",
                retry_after=1.0,
                code="history_in_flight",
            )
        self._held += size
        self._held_by[owner] = owners + size

    def release(self, history: History) -> None:
        self._held -= history.size
        left = self._held_by.pop(history.owner, 0) - history.size
        if left > 0:
            self._held_by[history.owner] = left

    async def admit_storing(self, owner: str) -> None:
        """Refuse a request that would store past the owner's quota, before it is served.
        A store that is away refuses nothing here: it costs the chain, not the answer."""
        try:
            count, size = await (await self._store()).usage(owner)
        except LedgerUnavailable:
            return
        config = self._config
        if count >= config.max_stored_per_owner or size >= config.max_stored_bytes_per_owner:
            raise StoredQuotaReached(
                f"stored responses are at their quota ({count:,} of "
                f"{config.max_stored_per_owner:,}, {size:,} of "
                f"{config.max_stored_bytes_per_owner:,} bytes): delete some, or send "
                "store: false"
            )


def _plausible(response_id: str) -> bool:
    """An id the store could hold (printable ASCII, its column's width): anything else is
    nobody's, answered without asking a database that may refuse it (a NUL byte)."""
    return len(response_id) <= 64 and response_id.isascii() and response_id.isprintable()
