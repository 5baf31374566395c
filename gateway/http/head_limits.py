"""Bounds on a request's head, enforced while it is parsed: uvicorn's httptools protocol
reads headers of any size and count and waits forever for a head that never ends, so one
client can hold memory, a socket, or the event loop itself (a 64 MB header took 7 s to
parse). This protocol answers 431 past `max_header_bytes` of head or `MAX_HEADERS`
headers, and closes a connection whose head is not complete within `HEAD_TIMEOUT_S`.

The byte limit travels in uvicorn's own `h11_max_incomplete_event_size` (the same idea for
the h11 parser), so it reaches every worker process with the rest of uvicorn's config."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEADERS = 100
HEAD_TIMEOUT_S = 10.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024


class _TooManyHeaders(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_head = self.config.h11_max_incomplete_event_size or DEFAULT_MAX_HEADER_BYTES
        self._in_head = True
        self._head_bytes = 0
        self._header_count = 0
        self._too_large = False
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            self._arm_head_timer()
        super().data_received(data)
        # The parser holds at most one read beyond the limit before this answers.
        if self._in_head and self._head_bytes > self._max_head and not self._too_large:
            self._too_large = True
            self.send_400_response("")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > MAX_HEADERS:
            self._too_large = True
            raise _TooManyHeaders  # stops the parser: answered in send_400_response
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next bytes on this connection are the next request's head
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            super().send_400_response(msg)
            return
        if self.transport.is_closing():
            return
        body = (
            b'{"error":{"message":"request headers are too large or too many",'
            b'"type":"invalid_request_error","param":null,"code":"headers_too_large"}}'
        )
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + body
        )
        self.transport.close()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self.transport.close()
