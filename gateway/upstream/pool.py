"""The connections to one upstream origin: at most so many at once, idle ones kept and
reused newest first, new ones made by resolving, racing the addresses and speaking TLS."""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections import deque
from dataclasses import dataclass

import aiohappyeyeballs

from gateway.upstream.connection import AnswerBounds, Connection
from gateway.upstream.errors import ConnectError, ConnectTimeout
from gateway.upstream.resolve import Resolve

HAPPY_EYEBALLS_S = 0.25  # RFC 8305's connection attempt delay


@dataclass(frozen=True, slots=True)
class PoolState:
    """One origin's pool as the metrics read it."""

    origin: str
    busy: int
    idle: int
    connects: int
    resends: int


@dataclass(frozen=True, slots=True)
class Origin:
    tls: bool
    host: str
    port: int

    def __str__(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host_header}"

    @property
    def host_header(self) -> str:
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@functools.cache  # loading the trust store costs milliseconds: once per process
def tls_context() -> ssl.SSLContext:
    """Certificates and host names verified against the system's trust store, HTTP/1.1."""
    context = ssl.create_default_context()
    context.set_alpn_protocols(["http/1.1"])
    return context


class Pool:
    """The connections to one origin: at most `size` at once, idle ones reused newest first
    and dropped once idle past `keepalive_s`."""

    def __init__(
        self,
        origin: Origin,
        size: int,
        keepalive_s: float,
        tls: ssl.SSLContext | None,
        bounds: AnswerBounds,
        resolve: Resolve,
    ) -> None:
        self.origin = origin
        self._resolve = resolve
        self.busy = 0  # connections handed out now
        self.connects = 0  # connections made, ever
        self.resends = 0  # requests sent again because a kept connection had gone stale
        self._permits = asyncio.Semaphore(size)
        self._idle: deque[Connection] = deque()
        self._keepalive_s = keepalive_s
        self._tls = tls
        self._bounds = bounds

    async def acquire(self, connect_s: float | None, fresh: bool) -> tuple[Connection, bool]:
        """A connection and whether it served before; the caller gives it back or drops it."""
        await self._permits.acquire()
        self.busy += 1
        try:
            if not fresh:
                now = asyncio.get_running_loop().time()
                while self._idle:
                    connection = self._idle.pop()
                    if not connection.closed and now - connection.idle_since < self._keepalive_s:
                        return connection, True
                    connection.close()
            connection = await self._connect(connect_s)
            self.connects += 1
            return connection, False
        except BaseException:
            self._let_go()
            raise

    def give_back(self, connection: Connection) -> None:
        connection.finish()
        if connection.reusable:
            connection.idle_since = asyncio.get_running_loop().time()
            self._idle.append(connection)
        else:
            connection.close()
        self._let_go()

    def drop(self, connection: Connection) -> None:
        connection.close()
        self._let_go()

    def _let_go(self) -> None:
        self.busy -= 1
        self._permits.release()

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def _connect(self, connect_s: float | None) -> Connection:
        """Resolve, then race the addresses (happy eyeballs: a black-holed IPv6 route costs
        250 ms, not the connect timeout), then TLS."""
        origin = self.origin
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_s):
                infos = await self._resolve(origin.host, origin.port)
                sock = await aiohappyeyeballs.start_connection(
                    infos, happy_eyeballs_delay=HAPPY_EYEBALLS_S, interleave=1
                )
                try:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    _, connection = await loop.create_connection(
                        lambda: Connection(self._bounds),
                        sock=sock,
                        ssl=self._tls,
                        server_hostname=origin.host if self._tls is not None else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise ConnectTimeout("connect timed out") from None
        except ssl.SSLCertVerificationError as exc:
            raise ConnectError(f"TLS certificate refused ({exc.verify_message})") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(f"cannot connect ({type(exc).__name__})") from None
        return connection
