"""A loopback upstream that answers with scripted bytes — exactly the bytes, split, delayed,
cut or withheld as a test says — and records what it received on each connection. For the
upstream client's conformance suite: it encodes no HTTP library's assumptions but the
test's own."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

# One step of an answer: bytes to write, or a pause (seconds), or "close" / "abort".
Step = bytes | float | str
Script = Callable[["Seen"], Awaitable[list[Step]] | list[Step]]


@dataclass
class Seen:
    """One request as the upstream read it, and the connection it came on."""

    connection: int
    head: bytes
    body: bytes


@dataclass
class RawUpstream:
    port: int
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0  # answer bytes written so far (for back-pressure tests)

    def url(self, path: str = "/v1/chat/completions", tls: bool = False) -> str:
        host = "localhost" if tls else "127.0.0.1"
        return f"{'https' if tls else 'http'}://{host}:{self.port}{path}"


async def _read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return head, body


@asynccontextmanager
async def raw_upstream(
    script: Script, tls: ssl.SSLContext | None = None
) -> AsyncIterator[RawUpstream]:
    """Serve `script` on 127.0.0.1: for each request, the steps it returns are played."""
    upstream = RawUpstream(0)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream.connections += 1
        number = upstream.connections
        try:
            while (request := await _read_request(reader)) is not None:
                seen = Seen(number, *request)
                upstream.seen.append(seen)
                steps = script(seen)
                if not isinstance(steps, list):
                    steps = await steps
                if await _play(steps, writer, upstream):
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the test ended
        finally:
            upstream.disconnected.set()
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=tls)
    upstream.port = server.sockets[0].getsockname()[1]
    try:
        yield upstream
    finally:
        server.close()
        await server.wait_closed()


async def _play(steps: list[Step], writer: asyncio.StreamWriter, upstream: RawUpstream) -> bool:
    """Play one answer; True when the connection was ended by it."""
    for step in steps:
        if isinstance(step, bytes):
            writer.write(step)
            await writer.drain()
            upstream.sent += len(step)
        elif isinstance(step, float):
            await asyncio.sleep(step)
        elif step == "close":
            writer.close()
            return True
        elif step == "abort":
            writer.transport.abort()
            return True
    return False


def answer(body: bytes, status: int = 200, headers: str = "") -> bytes:
    """A whole answer with its length told."""
    return (
        f"HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body


def chunked(parts: list[bytes], headers: str = "") -> bytes:
    """An answer in chunked encoding, one chunk per part."""
    out = [f"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n{headers}\r\n".encode()]
    for part in parts:
        out.append(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    out.append(b"0\r\n\r\n")
    return b"".join(out)
