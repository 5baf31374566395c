"""Server-sent events read from an upstream response, one whole event at a time, with the
first-byte and idle timeouts applied and connection failures mapped to our errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.errors import ConnectFailed, UpstreamStatusError
from gateway.providers.upstream_errors import from_transport
from gateway.upstream.client import Answer
from gateway.upstream.errors import TransportError

DONE = b"data: [DONE]\n\n"
MAX_EVENT_BYTES = 16 * 1024 * 1024  # one event, however an upstream frames it


async def iter_events(answer: Answer, first_byte_s: float, idle_s: float) -> AsyncIterator[bytes]:
    """Yield each event's bytes without the blank line that ends it. Raises
    `UpstreamFailure` on a timeout, a broken connection or an event past `MAX_EVENT_BYTES`;
    returns at a clean end of body."""
    buffer = b""
    within = first_byte_s
    while True:
        try:
            chunk = await answer.chunk(within)
        except TransportError as exc:
            raise from_transport(exc) from None
        if not chunk:
            if buffer.strip():
                yield buffer.strip(b"\r\n")
            return
        within = idle_s
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        buffer += chunk
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            event, buffer = buffer[:end], buffer[end + 2 :]
            if event:
                yield event
        if len(buffer) > MAX_EVENT_BYTES:
            answer.close()
            raise UpstreamStatusError(f"an upstream event is over {MAX_EVENT_BYTES} bytes")


class DataEvent(bytes):
    """An SSE `data:` event's bytes with the object they were made from, so that a reader
    further on (a translation into the client's protocol) does not parse them again. The
    bytes are the event; `data` is never changed once made."""

    data: dict[str, Any]


def data_event(data: dict[str, Any]) -> DataEvent:
    event = DataEvent(b"data: " + orjson.dumps(data) + b"\n\n")
    event.data = data
    return event


def data_of(event: bytes) -> bytes | None:
    """The `data:` payload of an event (multi-line data joined with newlines), or None."""
    if event.startswith(b"data:") and b"\n" not in event:
        return event[5:].lstrip(b" ")
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def event_name(event: bytes) -> str:
    """The `event:` line's name, else the data's `type` (Anthropic and the Responses API
    name every event; their data repeats the name)."""
    if event.startswith(b"event:"):
        line = event.split(b"\n", 1)[0]
        return line[6:].strip().decode("ascii", "replace")
    payload = data_of(event)
    if payload and payload.startswith(b"{"):
        try:
            kind = orjson.loads(payload).get("type")
        except (orjson.JSONDecodeError, AttributeError):
            return ""
        return kind if isinstance(kind, str) else ""
    return ""


def ended_early() -> ConnectFailed:
    return ConnectFailed("upstream ended the stream before [DONE]")
