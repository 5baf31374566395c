"""Stored Responses in the ledger's database through SQLAlchemy, imported at the first use of
the store: a gateway whose clients never store a Response never loads the SQL toolkit."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
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

from gateway.accounting.tables import engine_url, sqlite_pragmas
from gateway.errors import LedgerUnavailable, PayloadTooLarge
from gateway.state.stored_response import MAX_CHAIN, StoredResponse

log = logging.getLogger("spillover.responses")

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


class SqlResponses:
    """The store's tables and queries; `ResponseStore` makes one at its first use."""

    def __init__(self, url: str) -> None:
        self._engine: AsyncEngine = create_async_engine(engine_url(url), pool_pre_ping=True)
        if url.startswith("sqlite"):
            event.listen(self._engine.sync_engine, "connect", sqlite_pragmas)
        self._pruned = 0.0

    async def create(self) -> None:
        """The table, where it does not exist yet; our 503 when the database is away."""
        async with self._connection() as conn:
            await conn.run_sync(metadata.create_all)

    async def close(self) -> None:
        await self._engine.dispose()

    async def save(self, stored: StoredResponse, retention_s: float) -> None:
        row = {
            "id": stored.id,
            "owner": stored.owner,
            "created_at": stored.created_at,
            "expires_at": stored.created_at + retention_s,
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

    async def history(
        self, response_id: str, owner: str, max_bytes: int
    ) -> list[dict[str, Any]] | None:
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
        if size > max_bytes:
            raise PayloadTooLarge(
                f"the conversation behind previous_response_id holds {size:,} bytes, over "
                f"responses.max_history_bytes ({max_bytes:,}): start a new one"
            )
        items: list[dict[str, Any]] = []
        for given, answered in rows:
            items.extend(orjson.loads(given))
            items.extend(orjson.loads(answered))
        return items

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on the store; a database error is our 503, never a 500."""
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
