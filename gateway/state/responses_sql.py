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
    BigInteger,
    Column,
    Float,
    Index,
    MetaData,
    String,
    Table,
    Text,
    delete,
    event,
    func,
    insert,
    inspect,
    literal,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.accounting.tables import engine_url, sqlite_pragmas
from gateway.errors import InvalidRequest, LedgerUnavailable, NotFound
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
    # The three JSON texts' length: quotas and history bounds read it, never the texts.
    Column("size_bytes", BigInteger, nullable=False, server_default="0"),
    Index("ix_spillover_responses_owner", "owner", "expires_at"),
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
            await conn.run_sync(_add_size_and_index)

    async def close(self) -> None:
        await self._engine.dispose()

    async def save(self, stored: StoredResponse, retention_s: float) -> None:
        texts = {
            "input_items": orjson.dumps(stored.input_items).decode(),
            "output_items": orjson.dumps(stored.output_items).decode(),
            "response": orjson.dumps(stored.response).decode(),
        }
        row = {
            "id": stored.id,
            "owner": stored.owner,
            "created_at": stored.created_at,
            "expires_at": stored.created_at + retention_s,
            "previous_response_id": stored.previous_response_id,
            **texts,
            "size_bytes": sum(len(t) for t in texts.values()),
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

    async def usage(self, owner: str) -> tuple[int, int]:
        """The owner's live stored responses: how many, and their bytes."""
        t = responses_table
        query = select(func.count(), func.coalesce(func.sum(t.c.size_bytes), 0)).where(
            t.c.owner == owner, _live()
        )
        async with self._connection() as conn:
            count, size = (await conn.execute(query)).one()
        return int(count), int(size)

    async def chain(self, response_id: str, owner: str) -> tuple[list[str], int] | None:
        """The ids of the chain ending at `response_id`, oldest first, and their stored
        size, measured before anything is loaded; None when the id is not the owner's. An
        earlier turn that has expired or was deleted, or a chain past MAX_CHAIN turns, is an
        error: a conversation is never sent on cut short."""
        t = responses_table
        start = select(
            t.c.id, t.c.previous_response_id, t.c.size_bytes, literal(0).label("depth"),
        ).where(t.c.id == response_id, t.c.owner == owner, _live())  # fmt: skip
        walk = start.cte("chain", recursive=True)
        parent = t.alias("parent")
        walk = walk.union_all(
            select(
                parent.c.id, parent.c.previous_response_id, parent.c.size_bytes, walk.c.depth + 1,
            ).where(
                parent.c.id == walk.c.previous_response_id, parent.c.owner == owner,
                parent.c.expires_at > time.time(), walk.c.depth < MAX_CHAIN,
            )
        )  # fmt: skip
        query = select(walk.c.id, walk.c.previous_response_id, walk.c.size_bytes)
        async with self._connection() as conn:
            rows = (await conn.execute(query.order_by(walk.c.depth.desc()))).all()
        if not rows:
            return None
        oldest_parent = rows[0][1]
        if oldest_parent is not None and len(rows) > MAX_CHAIN:
            raise InvalidRequest(
                f"the conversation behind previous_response_id is longer than {MAX_CHAIN} "
                "turns: start a new one",
                param="previous_response_id",
            )
        if oldest_parent is not None:
            raise NotFound(
                f"an earlier response of this conversation ({oldest_parent[:64]}) has expired "
                "or was deleted",
                param="previous_response_id",
            )
        return [rid for rid, _, _ in rows], sum(int(size) for _, _, size in rows)

    async def load(self, ids: list[str]) -> list[dict[str, Any]]:
        """The items of the turns `ids` (from `chain`), in that order."""
        t = responses_table
        query = select(t.c.id, t.c.input_items, t.c.output_items).where(t.c.id.in_(ids))
        async with self._connection() as conn:
            found = {rid: (given, answered) for rid, given, answered in await conn.execute(query)}
        items: list[dict[str, Any]] = []
        for rid in ids:
            given, answered = found[rid]
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


def _add_size_and_index(conn: Any) -> None:
    """A table made before `size_bytes` gets it (its rows measured once) and the index."""
    columns = {c["name"] for c in inspect(conn).get_columns(responses_table.name)}
    if "size_bytes" not in columns:
        conn.execute(text(
            f"ALTER TABLE {responses_table.name} ADD COLUMN size_bytes BIGINT NOT NULL DEFAULT 0"
        ))  # fmt: skip
        conn.execute(text(
            f"UPDATE {responses_table.name} SET size_bytes = "
            "length(input_items) + length(output_items) + length(response)"
        ))  # fmt: skip
    for index in responses_table.indexes:
        index.create(conn, checkfirst=True)
