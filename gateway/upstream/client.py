"""The exchange on top of the pools (`pool.py`): `request` sends a whole request and returns
once the answer's head has arrived; the `Answer` hands out its body and gives the connection
back at its end (or closes it, when the body was left)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from gateway.upstream.connection import AnswerBounds, Connection
from gateway.upstream.errors import AnswerTimeout, BadRequestHead, MalformedAnswer, TransportError
from gateway.upstream.pool import Origin, Pool, PoolState, tls_context
from gateway.upstream.resolve import CachingResolver, Resolve

_FORBIDDEN = frozenset("\r\n\0")
# Headers the client writes itself: a caller's copy would contradict them.
_OURS = frozenset({"host", "content-length", "transfer-encoding", "connection", "accept-encoding"})


class Answer:
    """An answer whose head has arrived. Read its body with `read` or `chunk`; `close` it
    if it is left unread (the connection is then cut, and the upstream sees it go)."""

    def __init__(self, connection: Connection, pool: Pool) -> None:
        self.status = connection.status
        self.headers: Mapping[str, str] = connection.headers  # lower-case names
        self._connection = connection
        self._pool: Pool | None = pool

    async def chunk(self, idle_s: float | None = None) -> bytes:
        """The next part of the body; b"" once it has all been read."""
        try:
            part = await self._connection.chunk(idle_s)
        except BaseException:
            self._drop()
            raise
        if not part:
            self._give_back()
        return part

    async def read(self, max_bytes: int, idle_s: float | None = None) -> bytes:
        """The whole body; `MalformedAnswer` past `max_bytes`."""
        parts: list[bytes] = []
        size = 0
        while part := await self.chunk(idle_s):
            size += len(part)
            if size > max_bytes:
                self._drop()
                raise MalformedAnswer(f"the upstream's answer is over {max_bytes} bytes")
            parts.append(part)
        return b"".join(parts)

    @property
    def closed(self) -> bool:
        return self._pool is None

    @property
    def buffered(self) -> int:
        """Bytes received from the upstream and not yet read: bounded, whatever it sends."""
        return self._connection.buffered

    def release(self, within_s: float = 1.0) -> None:
        """The reader has what it wants (a stream's last event): the connection goes back
        once the answer's end marker is in — without waiting for it here — or is cut if the
        upstream sends more, or takes past `within_s`."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self._connection.when_complete(pool.give_back, pool.drop, within_s)

    def close(self) -> None:
        """Done with the answer: the connection goes back if its body was read to the end,
        and is cut otherwise."""
        if self._connection.complete and not self._connection.buffered:
            self._give_back()
        else:
            self._drop()

    def _give_back(self) -> None:
        if self._pool is not None:
            self._pool.give_back(self._connection)
            self._pool = None

    def _drop(self) -> None:
        if self._pool is not None:
            self._pool.drop(self._connection)
            self._pool = None


class UpstreamClient:
    """HTTP/1.1 to upstreams, one keep-alive pool per origin of at most `max_connections`."""

    def __init__(
        self,
        max_connections: int = 100,
        keepalive_s: float = 30.0,
        tls: ssl.SSLContext | None = None,
        bounds: AnswerBounds | None = None,
        resolve: Resolve | None = None,
    ) -> None:
        self._size = max_connections
        self._resolve = resolve or CachingResolver()
        self._keepalive_s = keepalive_s
        self._tls = tls
        self._bounds = bounds or AnswerBounds()
        self._pools: dict[Origin, Pool] = {}
        self._targets: dict[str, tuple[Origin, str]] = {}

    async def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: bytes,
        connect_s: float | None = None,
        first_byte_s: float | None = None,
    ) -> Answer:
        """Send a request; the answer once its head arrived. A reused connection that fails
        before any byte of the answer is replaced by a new one, once."""
        origin, target = self._target(url)
        request = _request_bytes(method, target, origin, headers, body)
        pool = self._pool(origin)
        connection, reused = await pool.acquire(connect_s, fresh=False)
        try:
            return await _exchange(pool, connection, request, first_byte_s)
        except TransportError as exc:
            if not reused or exc.received or isinstance(exc, AnswerTimeout):
                raise
        pool.resends += 1
        connection, _ = await pool.acquire(connect_s, fresh=True)
        return await _exchange(pool, connection, request, first_byte_s)

    def pools(self) -> list[PoolState]:
        """Each origin's connections now, and its counts since the client was made."""
        return [
            PoolState(str(origin), pool.busy, pool.idle, pool.connects, pool.resends)
            for origin, pool in self._pools.items()
        ]

    def idle(self, url: str) -> int:
        """Idle connections kept for `url`'s origin."""
        pool = self._pools.get(self._target(url)[0])
        return pool.idle if pool is not None else 0

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def _pool(self, origin: Origin) -> Pool:
        pool = self._pools.get(origin)
        if pool is None:
            tls = (self._tls or tls_context()) if origin.tls else None
            pool = self._pools[origin] = Pool(
                origin, self._size, self._keepalive_s, tls, self._bounds, self._resolve
            )
        return pool

    def _target(self, url: str) -> tuple[Origin, str]:
        known = self._targets.get(url)
        if known is None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise BadRequestHead(f"not an http(s) URL: {url[:64]!r}")
            tls = parts.scheme == "https"
            origin = Origin(tls, parts.hostname, parts.port or (443 if tls else 80))
            path = parts.path or "/"
            known = (origin, f"{path}?{parts.query}" if parts.query else path)
            if len(self._targets) < 1024:  # URLs come from the config: a handful
                self._targets[url] = known
        return known


async def _exchange(
    pool: Pool, connection: Connection, request: bytes, first_byte_s: float | None
) -> Answer:
    try:
        connection.send(request)
        await connection.head(first_byte_s)
    except BaseException:
        pool.drop(connection)
        raise
    return Answer(connection, pool)


def _request_bytes(
    method: str, target: str, origin: Origin, headers: Mapping[str, str], body: bytes
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1\r\nhost: {origin.host_header}\r\n"]
    for name, value in headers.items():
        if not _FORBIDDEN.isdisjoint(name) or not _FORBIDDEN.isdisjoint(value):
            raise BadRequestHead(f"header {name[:64]!r} carries a line break")
        if name.lower() in _OURS:
            continue
        lines.append(f"{name}: {value}\r\n")
    lines.append(f"content-length: {len(body)}\r\naccept-encoding: gzip, deflate\r\n\r\n")
    try:
        head = "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        raise BadRequestHead("a header is not Latin-1") from None
    return head + body
