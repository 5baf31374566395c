"""Stored Responses (OpenAI's `store: true`): what a `previous_response_id` chain needs — each
response's input and output items — kept by the gateway itself in the ledger's database, so
a chain goes on whichever target served each turn, across failovers. A response belongs to
its owner (the key's team, else the key): anyone else asking for it gets a 404. Rows expire
after `responses.retention_days` and are pruned as new ones arrive. The database is reached
at the store's first use (`gateway.state.responses_sql`), not at start."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from gateway.state.stored_response import StoredResponse

if TYPE_CHECKING:
    from gateway.state.responses_sql import SqlResponses


class ResponseStore:
    def __init__(self, url: str, retention_s: float, max_history_bytes: int = 32 << 20) -> None:
        self._url = url
        self._retention_s = retention_s
        self._max_history_bytes = max_history_bytes
        self._sql: SqlResponses | None = None
        self._opening = asyncio.Lock()

    def configure(self, retention_s: float, max_history_bytes: int) -> None:
        self._retention_s = retention_s
        self._max_history_bytes = max_history_bytes

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
        return await (await self._store()).get(response_id, owner)

    async def delete(self, response_id: str, owner: str) -> bool:
        return await (await self._store()).delete(response_id, owner)

    async def history(self, response_id: str, owner: str) -> list[dict[str, Any]] | None:
        """Every item of the chain ending at `response_id`, oldest first (each turn's input,
        then its output); None when the id is not the owner's."""
        store = await self._store()
        return await store.history(response_id, owner, self._max_history_bytes)
