"""One HTTP/1.1 connection to an upstream, one exchange at a time: the request written whole,
the answer parsed by httptools as its bytes arrive. The body is handed out chunk by chunk as
the reader asks; past `HIGH_WATER` bytes unread the socket stops being read, so a slow
client slows its upstream instead of filling the gateway's memory."""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import httptools

from gateway.upstream.errors import AnswerTimeout, Disconnected, MalformedAnswer, TransportError

HIGH_WATER = 256 * 1024  # unread answer bytes past which the socket is not read
LOW_WATER = 64 * 1024  # … and read again below
ORPHAN_BYTES = 64 * 1024  # a released answer's rest discarded at most, waiting for its end


@dataclass(frozen=True, slots=True)
class AnswerBounds:
    """Bounds on what an upstream may send in an answer's head."""

    max_head_bytes: int = 64 * 1024
    max_headers: int = 128


Hand = Callable[["Connection"], None]


class _Refused(Exception):
    """Raised inside a parser callback; httptools hands it back from `feed_data`."""


class Connection(asyncio.Protocol):
    """The protocol object of one socket. `send` starts an exchange, `head` waits for the
    answer's status and headers, `chunk` hands out its body; `reusable` says whether the
    next exchange may use it."""

    def __init__(self, bounds: AnswerBounds) -> None:
        self._loop = asyncio.get_running_loop()
        self._bounds = bounds
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle_since = 0.0
        self._paused = False
        self._start_exchange()
        self._in_exchange = False

    def _start_exchange(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.received = False  # any byte of this exchange's answer
        self.keep_alive = False
        self._head_bytes = 0
        self._header_count = 0
        self._head_done = False
        self._head: asyncio.Future[None] = self._loop.create_future()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._error: TransportError | None = None
        self._length_known = False
        self._informational = False
        self._decoder: zlib._Decompress | None = None
        self._in_exchange = True
        # Handed back once its answer ends (`when_complete`): what to call then, or if not.
        self._orphan: tuple[Hand, Hand] | None = None
        self._orphan_timer: asyncio.TimerHandle | None = None
        self._discarded = 0

    # The exchange, as the client drives it.

    def send(self, request: bytes) -> None:
        """Write a whole request (head and body) and start waiting for its answer."""
        assert self._transport is not None
        self._start_exchange()
        if self._transport.is_closing():  # the upstream let it go while it was kept
            self._fail(Disconnected("the kept connection was closed", False))
            return
        self._transport.write(request)

    async def head(self, first_byte_s: float | None) -> None:
        """Wait for the answer's status and headers."""
        await self._wait(self._head, first_byte_s, "first_byte")

    async def chunk(self, idle_s: float | None) -> bytes:
        """The next part of the body, b"" at its end; `idle_s` bounds a wait for it."""
        while not self._chunks:
            if self._complete:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            await self._wait(self._waiter, idle_s, "idle")
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._paused and self._buffered <= LOW_WATER and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return chunk

    @property
    def complete(self) -> bool:
        return self._complete

    @property
    def buffered(self) -> int:
        """Answer bytes received and not yet read."""
        return self._buffered

    @property
    def reusable(self) -> bool:
        """The last answer was read to its end and both sides will keep the connection."""
        return self._complete and self.keep_alive and not self.closed and not self._chunks

    def finish(self) -> None:
        self._in_exchange = False

    def when_complete(self, done: Hand, cut: Hand, within_s: float) -> None:
        """The reader has all it wants of this answer (a stream's last event): its unread
        rest — an end marker, usually already here — is discarded, and `done` is called once
        the answer ends, or `cut` if that takes past `within_s` or more than a little."""
        self._chunks.clear()
        self._buffered = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        if self._complete:
            done(self)
        elif self._error is not None or self.closed:
            cut(self)
        else:
            self._orphan = (done, cut)
            self._orphan_timer = self._loop.call_later(within_s, self._orphan_ends, False)

    def _orphan_ends(self, complete: bool) -> None:
        orphan, self._orphan = self._orphan, None
        if self._orphan_timer is not None:
            self._orphan_timer.cancel()
            self._orphan_timer = None
        if orphan is not None:
            orphan[0 if complete else 1](self)

    def close(self) -> None:
        """Close now; an exchange in flight is cut (the upstream sees the connection go)."""
        self.closed = True
        if self._transport is not None:
            if self._complete or not self._in_exchange:
                self._transport.close()
            else:
                self._transport.abort()

    async def _wait(
        self, waiting: asyncio.Future[None], within_s: float | None, phase: str
    ) -> None:
        # A timer armed only when there is something to wait for: most reads find their
        # bytes already here, and asyncio.timeout would cost a context per read.
        if within_s is None:
            await waiting
            return
        timer = self._loop.call_later(within_s, _time_out, waiting, phase)
        try:
            await waiting
        finally:
            timer.cancel()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but are one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if not self._in_exchange:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        self.received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(MalformedAnswer("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            refused = exc.__context__ if isinstance(exc.__context__, _Refused) else None
            self._fail(MalformedAnswer(str(refused) if refused else "unreadable HTTP answer"))

    def eof_received(self) -> bool:
        self.closed = True  # not to be taken from the pool in the moment before it is lost
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self._in_exchange or self._complete or self._error is not None:
            return
        if self._head_done and not self._length_known and exc is None:
            self._done()  # a body delimited by the connection's close
        elif self._head_done:
            self._fail(Disconnected("upstream closed the connection mid-response", True))
        else:
            self._fail(Disconnected("upstream closed the connection", self.received))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > self._bounds.max_head_bytes:
            raise _Refused("the upstream's answer head is too large")
        self._header_count += 1
        if self._header_count > self._bounds.max_headers:
            raise _Refused("the upstream's answer has too many headers")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key == "set-cookie":
            return  # one connection serves every tenant: a cookie is never kept
        known = self.headers.get(key)
        self.headers[key] = text if known is None else f"{known}, {text}"

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue, 103): the real one follows
            self._informational = True
            self.headers = {}
            self._head_bytes = self._header_count = 0
            return
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        headers = self.headers
        self._length_known = (
            "content-length" in headers or "transfer-encoding" in headers or status in (204, 304)
        )
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding == "gzip":
            self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        elif encoding != "identity":
            raise _Refused(f"the upstream's content-encoding {encoding[:32]!r} is not read here")
        self._head_done = True
        if not self._head.done():
            self._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        if self._orphan is not None:
            self._discarded += len(body)
            if self._discarded > ORPHAN_BYTES:
                self._orphan_ends(False)
            return
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error:
                raise _Refused("the upstream's compressed body is corrupt") from None
            if not body:
                return
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if self._decoder is not None:
            rest = self._decoder.flush()
            if rest:
                self._chunks.append(rest)
                self._buffered += len(rest)
        self._done()

    def _done(self) -> None:
        self._complete = True
        if not self._head.done():
            self._head.set_result(None)
        self._wake()
        if self._orphan is not None:
            self._orphan_ends(True)

    def _fail(self, error: TransportError) -> None:
        self._error = error
        self.keep_alive = False
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()  # retrieved: a head nobody waits for logs nothing
        self._wake()
        self.close()
        if self._orphan is not None:
            self._orphan_ends(False)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._waiter = None


def _time_out(waiting: asyncio.Future[None], phase: str) -> None:
    if not waiting.done():
        waiting.set_exception(AnswerTimeout(f"no answer within the {phase} timeout", phase))
