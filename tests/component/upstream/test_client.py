"""The upstream client's conformance suite, against a loopback upstream that plays exactly
the bytes each test scripts: keep-alive reuse and its limits, the one retry on a stale
connection, every body framing, timeouts, bounds, back-pressure, cutting an answer left
unread, cookies, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest

from gateway.upstream.client import UpstreamClient
from gateway.upstream.connection import HIGH_WATER, AnswerBounds
from gateway.upstream.errors import (
    AnswerTimeout,
    BadRequestHead,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    MalformedAnswer,
)
from gateway.upstream.resolve import CachingResolver
from tests.support.raw_upstream import Seen, Step, answer, chunked, raw_upstream
from tests.support.tls import make_pki

JSON = {"content-type": "application/json", "authorization": "Bearer sk-up"}


OK = answer(b'{"ok":true}')


def _always(*steps: Step):  # type: ignore[no-untyped-def]
    return lambda _seen: list(steps)


async def _post(client: UpstreamClient, url: str, body: bytes = b"{}", **timeouts: float) -> bytes:
    reply = await client.request("POST", url, JSON, body, **timeouts)
    return await reply.read(1 << 20)


async def test_a_connection_is_kept_and_reused_after_a_whole_answer() -> None:
    async with raw_upstream(_always(OK)) as up:
        client = UpstreamClient()
        assert await _post(client, up.url(), b'{"a":1}') == b'{"ok":true}'
        assert client.idle(up.url()) == 1
        assert await _post(client, up.url()) == b'{"ok":true}'
        await client.close()
    assert up.connections == 1
    head = up.seen[0].head.decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{up.port}\r\n" in head and "content-length: 7\r\n" in head
    assert "authorization: Bearer sk-up\r\n" in head
    assert up.seen[0].body == b'{"a":1}'


async def test_chunked_bodies_are_read_whole_or_part_by_part() -> None:
    parts = [b"data: one\n\n", b"data: two\n\n", b"data: [DONE]\n\n"]
    async with raw_upstream(_always(chunked(parts))) as up:
        client = UpstreamClient()
        assert await _post(client, up.url()) == b"".join(parts)
        reply = await client.request("POST", up.url(), JSON, b"{}")
        got = []
        while part := await reply.chunk():
            got.append(part)
        assert b"".join(got) == b"".join(parts)
        assert reply.closed and client.idle(up.url()) == 1
        await client.close()
    assert up.connections == 1


async def test_a_body_ended_by_the_connections_close_is_whole_and_the_connection_not_kept() -> None:
    close_delimited = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it"
    async with raw_upstream(_always(close_delimited, "close")) as up:
        client = UpstreamClient()
        assert await _post(client, up.url()) == b"all of it"
        assert client.idle(up.url()) == 0
        assert await _post(client, up.url()) == b"all of it"
        await client.close()
    assert up.connections == 2


@pytest.mark.parametrize(
    "ending",
    [
        answer(b"{}", headers="connection: close\r\n"),
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n{}",
    ],
    ids=["connection-close", "http-1.0"],
)
async def test_an_upstream_that_will_not_keep_the_connection_gets_a_new_one(ending: bytes) -> None:
    async with raw_upstream(_always(ending)) as up:
        client = UpstreamClient()
        assert await _post(client, up.url()) == b"{}"
        assert client.idle(up.url()) == 0
        assert await _post(client, up.url()) == b"{}"
        await client.close()
    assert up.connections == 2


async def test_an_answer_left_unread_is_cut_and_its_connection_never_reused() -> None:
    endless = [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"] + [
        b"6\r\ndata: \r\n",
        0.05,
    ] * 100

    def script(seen: Seen) -> list[Step]:
        return endless if seen.connection == 1 else [OK]

    async with raw_upstream(script) as up:
        client = UpstreamClient()
        reply = await client.request("POST", up.url(), JSON, b"{}")
        assert await reply.chunk() == b"data: "
        reply.close()  # the gateway's client went away
        await asyncio.wait_for(up.disconnected.wait(), 2)  # … and so does the upstream request
        assert await _post(client, up.url()) == b'{"ok":true}'
        await client.close()
    assert up.connections == 2


async def test_a_stale_kept_connection_is_replaced_once_before_any_byte() -> None:
    def script(seen: Seen) -> list[Step]:
        # The upstream drops its kept connection just as the second request arrives on it.
        on_this = sum(1 for s in up.seen if s.connection == seen.connection)
        return ["close"] if seen.connection == 1 and on_this == 2 else [OK]

    async with raw_upstream(script) as up:
        client = UpstreamClient()
        assert await _post(client, up.url()) == b'{"ok":true}'
        assert await _post(client, up.url(), b'{"again":1}') == b'{"ok":true}'
        [pool] = client.pools()
        assert (pool.origin, pool.connects, pool.resends, pool.busy, pool.idle) == (
            f"http://127.0.0.1:{up.port}", 2, 1, 0, 1)  # fmt: skip
        await client.close()
    assert [s.connection for s in up.seen] == [1, 1, 2]  # sent again, once, on a new one
    assert up.seen[2].body == b'{"again":1}'


async def test_a_kept_connection_that_fails_after_a_byte_of_the_answer_is_not_retried() -> None:
    def script(seen: Seen) -> list[Step]:
        return [OK] if len(up.seen) == 1 else [b"HTTP/1.1 200 OK\r\ncontent-le", "close"]

    async with raw_upstream(script) as up:
        client = UpstreamClient()
        await _post(client, up.url())
        with pytest.raises(Disconnected) as failed:
            await _post(client, up.url())
        assert failed.value.received
        await client.close()
    assert len(up.seen) == 2


async def test_a_new_connection_that_fails_is_not_retried() -> None:
    async with raw_upstream(_always("close")) as up:
        client = UpstreamClient()
        with pytest.raises(Disconnected):
            await _post(client, up.url())
        await client.close()
    assert len(up.seen) == 1


async def test_connect_failures_and_timeouts() -> None:
    client = UpstreamClient()
    async with raw_upstream(_always(OK)) as up:
        closed_port = up.port
    with pytest.raises(ConnectError, match="cannot connect"):
        await _post(client, f"http://127.0.0.1:{closed_port}/v1")
    # A server that accepts but never finishes the TLS handshake: the connect timeout.
    async with raw_upstream(_always(OK)) as up:
        with pytest.raises(ConnectTimeout):
            await _post(client, f"https://127.0.0.1:{up.port}/v1", connect_s=0.2)
    await client.close()


async def test_first_byte_and_idle_timeouts_name_their_phase() -> None:
    slow_head = [0.5, OK]
    slow_body = [b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345", 0.5, b"67890"]

    def script(seen: Seen) -> list[Step]:
        return slow_head if len(up.seen) == 1 else slow_body

    async with raw_upstream(script) as up:
        client = UpstreamClient()
        with pytest.raises(AnswerTimeout) as late:
            await client.request("POST", up.url(), JSON, b"{}", first_byte_s=0.1)
        assert late.value.phase == "first_byte"
        reply = await client.request("POST", up.url(), JSON, b"{}", first_byte_s=1.0)
        assert await reply.chunk(idle_s=0.1) == b"12345"
        with pytest.raises(AnswerTimeout) as idle:
            await reply.chunk(idle_s=0.1)
        assert idle.value.phase == "idle"
        assert client.idle(up.url()) == 0
        await client.close()


async def test_a_total_deadline_frees_the_connections_slot() -> None:
    async with raw_upstream(_always(0.5, OK)) as up:
        client = UpstreamClient(max_connections=1)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await _post(client, up.url())
        up_seen = len(up.seen)
        assert up_seen == 1 and client.idle(up.url()) == 0
        assert await _post(client, up.url()) == b'{"ok":true}'  # the one slot is free again
        await client.close()


async def test_at_most_max_connections_are_open_to_one_upstream() -> None:
    async with raw_upstream(_always(0.2, OK)) as up:
        client = UpstreamClient(max_connections=2)
        answers = await asyncio.gather(*(_post(client, up.url()) for _ in range(5)))
        await client.close()
    assert answers == [b'{"ok":true}'] * 5
    assert up.connections == 2


async def test_an_answers_head_and_body_are_bounded() -> None:
    huge_head = b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 70_000 + b"\r\ncontent-length: 0\r\n\r\n"
    many = b"HTTP/1.1 200 OK\r\n" + b"x-h: 1\r\n" * 200 + b"content-length: 0\r\n\r\n"
    scripts = iter([[huge_head], [many], [answer(b"x" * 5000)]])
    async with raw_upstream(lambda _seen: next(scripts)) as up:
        client = UpstreamClient(bounds=AnswerBounds(max_head_bytes=64 * 1024, max_headers=128))
        with pytest.raises(MalformedAnswer, match="too large"):
            await _post(client, up.url())
        with pytest.raises(MalformedAnswer, match="too many headers"):
            await _post(client, up.url())
        reply = await client.request("POST", up.url(), JSON, b"{}")
        with pytest.raises(MalformedAnswer, match="over 4096 bytes"):
            await reply.read(4096)
        await client.close()


async def test_what_is_not_http_is_a_malformed_answer() -> None:
    async with raw_upstream(_always(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")) as up:
        client = UpstreamClient()
        with pytest.raises(MalformedAnswer):
            await _post(client, up.url())
        await client.close()


async def test_no_cookie_is_ever_kept_or_sent() -> None:
    with_cookie = answer(b"{}", headers="set-cookie: session=abc; Path=/\r\n")
    async with raw_upstream(_always(with_cookie)) as up:
        client = UpstreamClient()
        reply = await client.request("POST", up.url(), JSON, b"{}")
        assert "set-cookie" not in reply.headers
        await reply.read(100)
        await _post(client, up.url())
        await client.close()
    assert all(b"cookie" not in s.head.lower() for s in up.seen)


async def test_a_header_carrying_a_line_break_is_refused_before_anything_is_sent() -> None:
    async with raw_upstream(_always(OK)) as up:
        client = UpstreamClient()
        smuggled = {**JSON, "anthropic-beta": "x\r\nx-admin: 1"}
        with pytest.raises(BadRequestHead):
            await client.request("POST", up.url(), smuggled, b"{}")
        await client.close()
    assert up.seen == []


async def test_a_compressed_body_is_read_plain_and_interim_answers_skipped() -> None:
    plain = b'{"long":"' + b"z" * 10_000 + b'"}'
    packed = gzip.compress(plain)
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    async with raw_upstream(
        _always(interim, answer(packed, headers="content-encoding: gzip\r\n"))
    ) as up:
        client = UpstreamClient()
        body = await _post(client, up.url())
        await client.close()
    assert body == plain
    assert b"accept-encoding: gzip, deflate\r\n" in up.seen[0].head


async def test_a_slow_reader_slows_its_upstream_instead_of_filling_memory() -> None:
    piece = b"data: " + b"x" * 65_530 + b"\n\n"  # 64 KiB events
    count = 512  # 32 MiB in all
    stream = [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"]
    stream += [f"{len(piece):x}\r\n".encode() + piece + b"\r\n"] * count + [b"0\r\n\r\n"]
    async with raw_upstream(_always(*stream)) as up:
        client = UpstreamClient()
        reply = await client.request("POST", up.url(), JSON, b"{}")
        await asyncio.sleep(0.5)  # the client's reader is slow
        assert reply.buffered <= HIGH_WATER + 256 * 1024
        assert up.sent < len(piece) * count  # the upstream is held back, not drained
        total = 0
        while part := await reply.chunk():
            total += len(part)
        await client.close()
    assert total == len(piece) * count


async def test_tls_verifies_the_certificate_and_host_and_speaks_http11(tmp_path: Path) -> None:
    pki = make_pki("localhost")
    names: list[str | None] = []
    server_tls = pki.server_context(tmp_path)
    server_tls.sni_callback = lambda _sock, name, _ctx: names.append(name)  # type: ignore[assignment,func-returns-value]
    async with raw_upstream(_always(OK), tls=server_tls) as up:
        trusting = UpstreamClient(tls=pki.client_context())
        assert await _post(trusting, up.url(tls=True)) == b'{"ok":true}'
        assert names == ["localhost"]  # SNI
        # The system's trust store does not know this CA: refused.
        default = UpstreamClient()
        with pytest.raises(ConnectError, match="certificate"):
            await _post(default, up.url(tls=True))
        for client in (trusting, default):
            await client.close()
    # A name the certificate does not carry: refused.
    named = make_pki("localhost", with_ip=False)
    async with raw_upstream(_always(OK), tls=named.server_context(tmp_path)) as up:
        other = UpstreamClient(tls=named.client_context())
        with pytest.raises(ConnectError, match="certificate"):
            await _post(other, f"https://127.0.0.1:{up.port}/v1")
        await other.close()


async def test_alpn_offers_only_http11(tmp_path: Path) -> None:
    pki = make_pki("localhost")
    h2_only = pki.server_context(tmp_path, alpn=["h2"])
    chosen: list[str | None] = []

    async def capture(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        chosen.append(ssl_object.selected_alpn_protocol() if ssl_object else None)
        writer.close()

    server = await asyncio.start_server(capture, "127.0.0.1", 0, ssl=h2_only)
    port = server.sockets[0].getsockname()[1]
    client = UpstreamClient(tls=pki.client_context())
    with pytest.raises((ConnectError, Disconnected)):
        await _post(client, f"https://localhost:{port}/v1")
    server.close()
    await client.close()
    assert chosen in ([], [None])  # never h2: the client offers http/1.1 alone
    assert ssl.HAS_ALPN


async def test_a_stream_released_at_its_last_event_goes_back_once_its_end_marker_is_in() -> None:
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    done = b"e\r\ndata: [DONE]\n\n\r\n"
    prompt, late, chatty = [head, done, 0.05, b"0\r\n\r\n"], [head, done, 0.5, b"0\r\n\r\n"], [
        head, done, b"10000\r\n" + b"x" * 65536 + b"\r\n", 0.3, b"0\r\n\r\n"
    ]  # fmt: skip
    scripts = iter([prompt, [OK], late, [OK], chatty, [OK]])
    async with raw_upstream(lambda _seen: next(scripts)) as up:
        client = UpstreamClient()
        for expected_connections in (1, 2, 3):
            reply = await client.request("POST", up.url(), JSON, b"{}")
            assert await reply.chunk() == b"data: [DONE]\n\n"
            reply.release(within_s=0.2)  # not waiting for the rest here
            await asyncio.sleep(0.1)
            assert await _post(client, up.url()) == b'{"ok":true}'
            assert up.connections == expected_connections
        await client.close()
    # The end marker in time: the same connection again; too late or too much: a new one.
    assert [s.connection for s in up.seen] == [1, 1, 1, 2, 2, 3]


async def test_a_black_holed_address_costs_a_quarter_second_not_the_connect_timeout() -> None:
    """Happy eyeballs: the first address answers nothing (SYNs dropped, as a broken IPv6
    route does); the next one is tried 250 ms later, within the connect timeout."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(0)
    filling = []
    for _ in range(3):  # past its backlog: further SYNs are dropped
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(hole.getsockname())
        filling.append(s)
    async with raw_upstream(_always(OK)) as up:
        addresses = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", hole.getsockname()),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", up.port)),
        ]
        asked: list[tuple[str, int]] = []

        async def resolve(host: str, port: int) -> list[Any]:
            asked.append((host, port))
            return addresses

        client = UpstreamClient(resolve=resolve)
        started = asyncio.get_running_loop().time()
        assert await _post(client, "http://upstream.example:8000/v1", connect_s=2.0) == (
            b'{"ok":true}'
        )
        assert asyncio.get_running_loop().time() - started < 1.0
        await client.close()
    assert asked == [("upstream.example", 8000)]
    for s in [hole, *filling]:
        s.close()


class _CountedResolver(CachingResolver):
    def __init__(self) -> None:
        super().__init__(ttl_s=60)
        self.lookups = 0

    async def lookup(self, host: str, port: int) -> list[Any]:
        self.lookups += 1
        return await super().lookup(host, port)


async def test_a_host_is_resolved_once_for_a_burst_of_new_connections() -> None:
    async with raw_upstream(_always(0.05, OK)) as up:
        resolver = _CountedResolver()
        client = UpstreamClient(resolve=resolver)
        url = f"http://localhost:{up.port}/v1"
        await _post(client, url)  # the first connection resolves
        answers = await asyncio.gather(*(_post(client, url) for _ in range(8)))
        await client.close()
    assert answers == [b'{"ok":true}'] * 8
    assert up.connections >= 8 and resolver.lookups == 1
