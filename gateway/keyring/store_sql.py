"""The keyring's tables in the ledger's database (SQLite or PostgreSQL, through SQLAlchemy):
keys, teams, the audit log, and one version number that every change raises in the same
transaction. Raising it first takes the database's write lock (SQLite) or the version row's
lock (PostgreSQL), so changes are serialised: two admins updating one key never lose an
update, and a replica that sees a new version knows there is something to load."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.accounting.tables import engine_url, sqlite_pragmas
from gateway.errors import Conflict, LedgerUnavailable, NotFound
from gateway.keyring.records import StoredKey, StoredTeam
from gateway.keyring.rows import (
    AUDIT,
    KEYS,
    TEAMS,
    VERSION,
    as_json,
    key_of,
    key_row,
    team_of,
    team_row,
)

log = logging.getLogger("spillover.keyring")

metadata = MetaData()
keys_table = Table(
    KEYS,
    metadata,
    Column("name", String(64), primary_key=True),
    Column("team", String(64), index=True),
    Column("user_id", String(128)),
    Column("role", String(8), nullable=False),
    Column("priority", String(16), nullable=False),
    Column("routes", Text),  # JSON list, NULL: every route
    Column("limits", Text, nullable=False),  # JSON
    Column("budget", Text, nullable=False),  # JSON
    Column("metadata", Text, nullable=False),  # JSON
    Column("secret_sha256", String(64), nullable=False, unique=True),
    Column("hint", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("expires_at", Float),
    Column("rotated_at", Float),
    Column("revoked_at", Float),
    Column("previous_sha256", String(64)),
    Column("previous_until", Float),
)
teams_table = Table(
    TEAMS,
    metadata,
    Column("name", String(64), primary_key=True),
    Column("limits", Text, nullable=False),
    Column("budget", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)
audit_table = Table(
    AUDIT,
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("ts", Float, nullable=False, index=True),
    Column("actor", String(64), nullable=False),
    Column("action", String(16), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("subject", String(64), nullable=False, index=True),
    Column("before", Text),  # JSON, the public view: never a secret nor its hash
    Column("after", Text),
)
version_table = Table(
    VERSION,
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)


class KeyringTables:
    """Reads and changes of the keyring's tables; each change is one transaction with its
    audit entry and the version it raised."""

    def __init__(self, url: str) -> None:
        self._engine: AsyncEngine = create_async_engine(engine_url(url), pool_pre_ping=True)
        if url.startswith("sqlite"):
            event.listen(self._engine.sync_engine, "connect", sqlite_pragmas)

    async def create(self) -> None:
        """The tables and the version row, where missing. Replicas starting together may
        race to make them: the loser's next try finds them made."""
        for attempt in range(3):
            try:
                async with self._engine.begin() as conn:
                    await conn.run_sync(metadata.create_all)
                    found = (await conn.execute(select(version_table.c.version))).first()
                    if found is None:
                        await conn.execute(insert(version_table).values(id=1, version=0))
                return
            except (SQLAlchemyError, OSError) as exc:
                if attempt == 2:
                    raise LedgerUnavailable(
                        f"the keyring's tables cannot be made ({type(exc).__name__})",
                        retry_after=2.0,
                    ) from exc

    async def close(self) -> None:
        await self._engine.dispose()

    async def version(self) -> int | None:
        async with self._transaction() as conn:
            return int((await conn.execute(select(version_table.c.version))).scalar_one())

    async def load(self) -> tuple[int, list[StoredKey], list[StoredTeam]]:
        """Everything, at one version (one transaction)."""
        async with self._transaction() as conn:
            version = int((await conn.execute(select(version_table.c.version))).scalar_one())
            keys = [key_of(r) for r in (await conn.execute(select(keys_table))).mappings()]
            teams = [team_of(r) for r in (await conn.execute(select(teams_table))).mappings()]
        return version, keys, teams

    # --- changes: one transaction each, serialised by the version row --------------------

    async def add_team(self, team: StoredTeam, actor: str) -> StoredTeam:
        async with self._change() as conn:
            t = teams_table
            if (await conn.execute(select(t.c.name).where(t.c.name == team.name))).first():
                raise Conflict(f"team {team.name!r} exists already")
            await conn.execute(insert(t).values(**team_row(team)))
            await _audit(conn, actor, "create", "team", team.name, None, team.public())
        return team

    async def change_team(
        self, name: str, change: Callable[[StoredTeam], StoredTeam], actor: str
    ) -> StoredTeam:
        async with self._change() as conn:
            row = (
                (await conn.execute(select(teams_table).where(teams_table.c.name == name)))
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"no team {name[:64]!r}")
            before = team_of(row)
            after = change(before)
            await conn.execute(
                update(teams_table).where(teams_table.c.name == name).values(**team_row(after))
            )
            await _audit(conn, actor, "update", "team", name, before.public(), after.public())
        return after

    async def add_key(self, key: StoredKey, actor: str) -> StoredKey:
        async with self._change() as conn:
            t = keys_table
            if (await conn.execute(select(t.c.name).where(t.c.name == key.name))).first():
                raise Conflict(f"key {key.name!r} exists already")
            await conn.execute(insert(t).values(**key_row(key)))
            now = time.time()
            await _audit(conn, actor, "create", "key", key.name, None, key.public(now))
        return key

    async def change_key(
        self, name: str, change: Callable[[StoredKey], StoredKey], action: str, actor: str
    ) -> StoredKey:
        async with self._change() as conn:
            row = (
                (await conn.execute(select(keys_table).where(keys_table.c.name == name)))
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"no key {name[:64]!r}")
            before = key_of(row)
            after = change(before)
            await conn.execute(
                update(keys_table).where(keys_table.c.name == name).values(**key_row(after))
            )
            now = time.time()
            await _audit(conn, actor, action, "key", name, before.public(now), after.public(now))
        return after

    async def audit(
        self, limit: int, before_id: int | None, subject: str | None
    ) -> list[dict[str, Any]]:
        t = audit_table
        query = select(t).order_by(t.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(t.c.id < before_id)
        if subject is not None:
            query = query.where(t.c.subject == subject)
        async with self._transaction() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [
            {
                **{c: r[c] for c in ("id", "ts", "actor", "action", "kind", "subject")},
                "before": None if r["before"] is None else orjson.loads(r["before"]),
                "after": None if r["after"] is None else orjson.loads(r["after"]),
            }
            for r in rows
        ]

    @contextlib.asynccontextmanager
    async def _change(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that first raises the version: the lock every change waits for."""
        async with self._transaction() as conn:
            v = version_table.c.version
            await conn.execute(
                update(version_table).where(version_table.c.id == 1).values(version=v + 1)
            )
            yield conn

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction; a database error is our 503, never a 500."""
        try:
            async with self._engine.begin() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            log.warning("the keyring's tables failed: %s", type(exc).__name__)
            raise LedgerUnavailable(
                "keys and teams cannot be read or changed right now", retry_after=2.0
            ) from exc


async def _audit(
    conn: AsyncConnection,
    actor: str,
    action: str,
    kind: str,
    subject: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    await conn.execute(
        insert(audit_table).values(
            ts=time.time(),
            actor=actor[:64],
            action=action,
            kind=kind,
            subject=subject,
            before=None if before is None else as_json(before),
            after=None if after is None else as_json(after),
        )
    )
