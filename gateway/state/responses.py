"""Stored Responses (OpenAI's `store: true`): what a `previous_response_id` chain needs — each
response's input and output items — kept by the gateway itself in the ledger's database, so
a chain goes on whichever target served each turn, across failovers. A response belongs to
its owner (the key's team, else the key): anyone else asking for it gets a 404. Rows expire
after `responses.retention_days` and are pruned as new ones arrive."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Float,
    MetaData,
    String,
    Table,
    Text,
    delete,
    event,
    insert,
    literal,
    select,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.accounting.ledger import engine_url, sqlite_pragmas
from gateway.errors import LedgerUnavailable, PayloadTooLarge

log = logging.getLogger("spillover.responses")

MAX_CHAIN = 1000  # turns of one conversation the gateway walks back
_PRUNE_EVERY_S = 600.0

metadata = MetaData()
responses_table = Table(
    "spillover_responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    Column("previous_response_id", String(64)),
    Column("input_items", Text, nullable=False),  # JSON: this turn's input, as sent
    Column("output_items", Text, nullable=False),  # JSON: what the model answered
    Column("response", Text, nullable=False),  # JSON: the Response object returned
)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    owner: str
    created_at: float
    previous_response_id: str | None
    input_items: list[dict[str, Any]]
    output_items: list[dict[str, Any]]
    response: dict[str, Any]


class ResponseStore:
    def __init__(self, url: str, retention_s: float, max_history_bytes: int = 32 << 20) -> None:
        self._url = url
        self._retention_s = retention_s
        self._max_history_bytes = max_history_bytes
        self._engine: AsyncEngine | None = None
        self._pruned = 0.0

    def configure(self, retention_s: float, max_history_bytes: int) -> None:
        self._retention_s = retention_s
        self._max_history_bytes = max_history_bytes

    async def start(self) -> None:
        self._engine = create_async_engine(engine_url(self._url), pool_pre_ping=True)
        if self._url.startswith("sqlite"):
            event.listen(self._engine.sync_engine, "connect", sqlite_pragmas)
        try:
            async with self._engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
        except (SQLAlchemyError, OSError) as exc:
            # The store may come up later; each call says so until it does.
            log.warning("the response store is not reachable yet: %s", type(exc).__name__)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()

    async def save(self, stored: StoredResponse) -> None:
        row = {
            "id": stored.id,
            "owner": stored.owner,
            "created_at": stored.created_at,
            "expires_at": stored.created_at + self._retention_s,
            "previous_response_id": stored.previous_response_id,
            "input_items": orjson.dumps(stored.input_items).decode(),
            "output_items": orjson.dumps(stored.output_items).decode(),
            "response": orjson.dumps(stored.response).decode(),
        }
        async with self._connection() as conn:
            await conn.execute(insert(responses_table).values(**row))
            if time.time() - self._pruned > _PRUNE_EVERY_S:
                self._pruned = time.time()
                t = responses_table
                await conn.execute(delete(t).where(t.c.expires_at < self._pruned))

    async def get(self, response_id: str, owner: str) -> StoredResponse | None:
        t = responses_table
        query = select(t).where(t.c.id == response_id, t.c.owner == owner, _live())
        async with self._connection() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _stored(dict(row))

    async def delete(self, response_id: str, owner: str) -> bool:
        t = responses_table
        async with self._connection() as conn:
            result = await conn.execute(
                delete(t).where(t.c.id == response_id, t.c.owner == owner, _live())
            )
        return bool(result.rowcount)

    async def history(self, response_id: str, owner: str) -> list[dict[str, Any]] | None:
        """Every item of the chain ending at `response_id`, oldest first (each turn's input,
        then its output), in one recursive query; None when the id is not the owner's."""
        t = responses_table
        start = select(
            t.c.id, t.c.previous_response_id, t.c.input_items, t.c.output_items,
            literal(0).label("depth"),
        ).where(t.c.id == response_id, t.c.owner == owner, _live())  # fmt: skip
        chain = start.cte("chain", recursive=True)
        parent = t.alias("parent")
        chain = chain.union_all(
            select(
                parent.c.id, parent.c.previous_response_id, parent.c.input_items,
                parent.c.output_items, chain.c.depth + 1,
            ).where(
                parent.c.id == chain.c.previous_response_id, parent.c.owner == owner,
                chain.c.depth < MAX_CHAIN,
            )
        )  # fmt: skip
        query = select(chain.c.input_items, chain.c.output_items).order_by(chain.c.depth.desc())
        async with self._connection() as conn:
            rows = (await conn.execute(query)).all()
        if not rows:
            return None
        size = sum(len(given) + len(answered) for given, answered in rows)
        if size > self._max_history_bytes:
            raise PayloadTooLarge(
                f"the conversation behind previous_response_id holds {size:,} bytes, over "
                f"responses.max_history_bytes ({self._max_history_bytes:,}): start a new one"
            )
        items: list[dict[str, Any]] = []
        for given, answered in rows:
            items.extend(orjson.loads(given))
            items.extend(orjson.loads(answered))
        return items

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on the store; a database error is our 503, never a 500."""
        if self._engine is None:
            raise LedgerUnavailable("the response store has not started", retry_after=1.0)
        try:
            async with self._engine.begin() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise _unavailable(exc) from exc


def _unavailable(exc: BaseException) -> LedgerUnavailable:
    log.warning("the response store failed: %s", type(exc).__name__)
    return LedgerUnavailable("stored responses are unavailable right now", retry_after=2.0)


def _live() -> Any:
    return responses_table.c.expires_at > time.time()


def _stored(row: dict[str, Any]) -> StoredResponse:
    return StoredResponse(
        id=row["id"],
        owner=row["owner"],
        created_at=row["created_at"],
        previous_response_id=row["previous_response_id"],
        input_items=orjson.loads(row["input_items"]),
        output_items=orjson.loads(row["output_items"]),
        response=orjson.loads(row["response"]),
    )
