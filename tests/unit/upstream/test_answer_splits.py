"""Whatever way an upstream's bytes are split into reads, the client reads the same answer:
every framing (length told, chunked, ended by the connection's close, gzip), cut at every
offset and at offsets Hypothesis chooses."""

from __future__ import annotations

import asyncio
import gzip
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.upstream.connection import AnswerBounds, Connection
from gateway.upstream.errors import Disconnected


class _Transport(asyncio.Transport):
    """Enough of a socket for the protocol: writes are kept, reading can pause."""

    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def _framings(body: bytes) -> dict[str, tuple[bytes, bool]]:
    """The same body framed every way an upstream may; True: ended by the close."""
    chunks = b"".join(
        f"{len(body[i : i + 7]):x}\r\n".encode() + body[i : i + 7] + b"\r\n"
        for i in range(0, len(body), 7)
    )
    packed = gzip.compress(body)
    return {
        "length": (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body, False),
        "chunked": (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
            + chunks
            + b"0\r\n\r\n",
            False,
        ),
        "close": (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body, True),
        "gzip": (
            b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
            + packed,
            False,
        ),
        "interim": (
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n"
            % len(body)
            + body,
            False,
        ),
    }


async def _read(raw: bytes, cuts: list[int], closes: bool) -> tuple[int, dict[str, str], bytes]:
    connection = Connection(AnswerBounds())
    connection.connection_made(_Transport())
    connection.send(b"POST / HTTP/1.1\r\n\r\n")
    edges = sorted({c for c in cuts if 0 < c < len(raw)})
    for start, end in zip([0, *edges], [*edges, len(raw)], strict=True):
        connection.data_received(raw[start:end])
    if closes:
        connection.connection_lost(None)
    await connection.head(1.0)
    parts = []
    while part := await connection.chunk(1.0):
        parts.append(part)
    return connection.status, connection.headers, b"".join(parts)


def _run(raw: bytes, cuts: list[int], closes: bool) -> tuple[int, dict[str, str], bytes]:
    return asyncio.run(_read(raw, cuts, closes))


BODY = b'data: {"choices":[{"delta":{"content":"h\xc3\xa9llo"}}]}\n\ndata: [DONE]\n\n'


def test_every_framing_cut_at_every_single_offset_reads_the_same() -> None:
    for name, (raw, closes) in _framings(BODY).items():
        for offset in range(len(raw) + 1):
            status, _, body = _run(raw, [offset], closes)
            assert (status, body) == (200, BODY), (name, offset)


def test_every_framing_fed_one_byte_at_a_time_reads_the_same() -> None:
    for name, (raw, closes) in _framings(BODY).items():
        status, headers, body = _run(raw, list(range(len(raw))), closes)
        assert (status, body) == (200, BODY), name
        assert all(key == key.lower() for key in headers)


@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(max_size=600),
    cuts=st.lists(st.integers(min_value=0, max_value=800), max_size=12),
    framing=st.sampled_from(["length", "chunked", "close", "gzip", "interim"]),
)
def test_any_body_split_anywhere_reads_the_same(body: bytes, cuts: list[int], framing: str) -> None:
    raw, closes = _framings(body)[framing]
    assert _run(raw, cuts, closes)[2] == body


def test_a_close_before_the_told_length_is_a_cut_answer_not_a_short_one() -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"

    async def read() -> None:
        connection = Connection(AnswerBounds())
        connection.connection_made(_Transport())
        connection.send(b"POST / HTTP/1.1\r\n\r\n")
        connection.data_received(raw)
        connection.connection_lost(None)
        await connection.head(1.0)
        assert await connection.chunk(1.0) == b"only this"
        try:
            await connection.chunk(1.0)
        except Disconnected as cut:
            assert cut.received
        else:
            raise AssertionError("a short body read as whole")

    asyncio.run(read())
