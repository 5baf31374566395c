"""A request body read within its limit: a client sending more is cut off as it sends, and
one declaring more is refused before a byte is read."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import Receive

from gateway.errors import PayloadTooLarge


async def read_bounded(
    headers: Mapping[bytes, bytes], receive: Receive, limit: int
) -> bytes | None:
    """The whole body, or None when the client left while sending it; PayloadTooLarge past
    `limit`."""
    declared = headers.get(b"content-length")
    if declared is not None and (
        not declared.isdigit() or len(declared) > 12 or int(declared) > limit
    ):
        raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
