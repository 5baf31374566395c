"""The keyring as this process holds it: every stored key and team at one version, in
memory, so authenticating a stored key is one dict lookup whatever their number. A change
made anywhere reaches every process within a second: the process that made it loads it at
once and tells the others over Redis (with shared state); every process also checks the
database's version every `keyring.refresh_s` — the safety net, and the only way without
Redis. A process that can reach neither keeps serving the last set it loaded and says so
(`stale_s`, `/admin/readiness`, `spillover_keyring_stale_seconds`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from gateway.errors import LedgerUnavailable
from gateway.keyring import secrets
from gateway.keyring.records import StoredKey, StoredTeam
from gateway.keys import Principal
from policies.schema import GatewayConfig

if TYPE_CHECKING:
    from gateway.keyring.store_sql import KeyringTables
    from gateway.state.shared import SharedRedis

log = logging.getLogger("spillover.keyring")


class KeyringReads(Protocol):
    """What a check every `refresh_s` reads (`reads_sqlite.py`, or the SQL tables)."""

    async def version(self) -> int | None:
        """The keyring's version; None while no change has made its tables."""

    async def load(self) -> tuple[int, list[StoredKey], list[StoredTeam]]: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Holder:
    """Who a stored secret's digest authenticates as, and until when (None: no end)."""

    principal: Principal
    not_after: float | None


@dataclass(frozen=True)
class Snapshot:
    version: int = -1  # nothing loaded yet
    keys: dict[str, StoredKey] = field(default_factory=dict)
    teams: dict[str, StoredTeam] = field(default_factory=dict)
    by_digest: dict[str, Holder] = field(default_factory=dict)

    @classmethod
    def of(cls, version: int, keys: list[StoredKey], teams: list[StoredTeam]) -> Snapshot:
        by_digest: dict[str, Holder] = {}
        for key in keys:
            if key.revoked_at is not None:
                continue
            principal = Principal(
                key_name=key.name,
                team=key.team,
                routes=frozenset(key.routes) if key.routes is not None else None,
                admin=key.role == "admin",
                viewer=key.role == "viewer",
                priority=key.priority,
            )
            by_digest[key.secret_sha256] = Holder(principal, key.expires_at)
            if key.previous_sha256 is not None and key.previous_until is not None:
                until = key.previous_until
                if key.expires_at is not None:
                    until = min(until, key.expires_at)
                by_digest[key.previous_sha256] = Holder(principal, until)
        return cls(version, {k.name: k for k in keys}, {t.name: t for t in teams}, by_digest)


class Keyring:
    prefix = secrets.PREFIX.encode()

    def __init__(
        self,
        url: str | None,
        refresh_s: float,
        shared: SharedRedis | None = None,
    ) -> None:
        """`url`: the ledger's database; None: the keyring is off (`keyring.enabled: false`)
        and stays empty. `on_change` hears of each set loaded."""
        self.snapshot = Snapshot()
        self.on_change: Callable[[Snapshot], None] = lambda _snapshot: None
        self.on_check: Callable[[float], None] = lambda _stale_s: None  # after each check
        self._url = url
        self._reads: KeyringReads | None = None
        self._tables: KeyringTables | None = None
        self._refresh_s = refresh_s
        self._shared = shared
        self._channel = (shared.prefix if shared else "") + "keyring"
        self._wake = asyncio.Event()
        # One read at a time: the reader's connection and its transaction are one, and a
        # caller that waited finds the set the one before it loaded.
        self._reading = asyncio.Lock()
        self._making = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._loaded_at = 0.0  # when the database last answered
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return self._url is not None

    async def writable(self) -> KeyringTables:
        """The tables, made where missing, for a change (and the audit log): the SQL toolkit
        is imported here, at the first one."""
        assert self._url is not None, "the keyring is off"
        async with self._making:
            if self._tables is None:
                from gateway.keyring.store_sql import KeyringTables

                tables = KeyringTables(self._url)
                try:
                    await tables.create()
                except BaseException:
                    await tables.close()
                    raise
                self._tables = tables
            return self._tables

    async def _reader(self) -> KeyringReads:
        if self._reads is None:
            assert self._url is not None, "the keyring is off"
            if self._url.startswith("sqlite:///"):
                from gateway.keyring.reads_sqlite import SqliteReads

                self._reads = SqliteReads(self._url[len("sqlite:///") :])
            else:  # PostgreSQL: the ledger has loaded the toolkit already
                self._reads = await self.writable()
        return self._reads

    def lookup(self, digest: str) -> Principal | None:
        """The principal a stored secret authenticates as now, if any."""
        holder = self.snapshot.by_digest.get(digest)
        if holder is None:
            return None
        if holder.not_after is not None and time.time() >= holder.not_after:
            return None
        return holder.principal

    def holders(self) -> Iterator[tuple[str, Principal]]:
        for key_digest, holder in self.snapshot.by_digest.items():
            yield key_digest, holder.principal

    @property
    def version(self) -> int:
        return self.snapshot.version

    def well_formed(self, token: bytes) -> bool:
        try:
            return secrets.well_formed(token.decode("ascii"))
        except UnicodeDecodeError:
            return False

    def clashes(self, config: GatewayConfig) -> list[str]:
        """A config file's key and team names that are also stored ones: a name lives in
        one place, so the file is refused rather than silently overriding the record."""
        stored = self.snapshot
        said = [
            f"keys[{i}].name: {key.name!r} is also a stored key (spillover keys show "
            f"{key.name}); rename one of them"
            for i, key in enumerate(config.keys)
            if key.name in stored.keys
        ]
        said += [
            f"teams.{name}: also a stored team (spillover teams show {name}); rename one"
            for name in config.teams
            if name in stored.teams
        ]
        return said

    def stale_s(self, now: float | None = None) -> float:
        """How long since the database last answered (0 while it does)."""
        if self._url is None or not self.failures:
            return 0.0
        return (now or time.time()) - self._loaded_at

    async def start(self) -> None:
        if self._url is None:
            return
        try:
            await self.refresh()
        except LedgerUnavailable as exc:
            self.failures += 1
            log.error("keyring: the database cannot be read (%s); stored keys wait", exc)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._poll()))
        if self._shared is not None:
            self._tasks.append(loop.create_task(self._listen()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            # Stopping: whatever a task was in the middle of (a Redis reconnect that meets
            # its closed transport) ends with it, and is no error of the shutdown.
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._reads is not None:
            await self._reads.close()
        if self._tables is not None and self._tables is not self._reads:
            await self._tables.close()

    async def refresh(self) -> bool:
        """Load the keyring when the database holds a newer version; True when it did."""
        async with self._reading:
            return await self._refresh()

    async def _refresh(self) -> bool:
        reads = await self._reader()
        version = await reads.version()
        if version == self.snapshot.version or (version is None and self.snapshot.version == 0):
            self._answered()
            return False
        keys: list[StoredKey] = []
        teams: list[StoredTeam] = []
        if version is None:  # no change has made the tables yet: nothing stored
            version = 0
        else:
            version, keys, teams = await reads.load()
        self._answered()
        if version == self.snapshot.version:
            return False
        snapshot = Snapshot.of(version, keys, teams)
        self.snapshot = snapshot
        self.on_change(snapshot)
        return True

    async def current(self) -> Snapshot:
        """The set as the database holds it now, or — while it does not answer — the last
        one loaded (reads of the admin API and the console go on)."""
        with contextlib.suppress(LedgerUnavailable):
            await self.refresh()
        return self.snapshot

    async def changed(self) -> None:
        """After a change made here (committed): load it now, and tell the other processes.
        Neither may fail the change: the next check finds it."""
        with contextlib.suppress(LedgerUnavailable):
            await self.refresh()
        if self._shared is None:
            return
        from redis.exceptions import RedisError

        try:
            await self._shared.client.publish(self._channel, str(self.snapshot.version))
        except (RedisError, OSError) as exc:  # the others find it at their next check
            self._shared.lost(exc)

    def _answered(self) -> None:
        self._loaded_at = time.time()
        if self.failures:
            log.info("keyring: the database answers again")
        self.failures = 0

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._refresh_s)
            self._wake.clear()
            try:
                await self.refresh()
            except LedgerUnavailable:
                if not self.failures:
                    log.warning("keyring: the database does not answer; keeping the last set")
                self.failures += 1
            except Exception:
                self.failures += 1
                log.exception("keyring: refresh failed")
            self.on_check(self.stale_s())

    async def _listen(self) -> None:
        """Wake the poll at once when another process says it changed something."""
        assert self._shared is not None
        from redis.exceptions import RedisError

        while True:
            client = self._shared.listener()
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                async for _message in pubsub.listen():
                    self._wake.set()
            except (RedisError, OSError, RuntimeError):  # RuntimeError: a transport closed
                await asyncio.sleep(1.0)  # the poll carries on meanwhile
            finally:
                with contextlib.suppress(RedisError, OSError, RuntimeError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await client.aclose()
