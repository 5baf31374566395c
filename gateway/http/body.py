"""A request body read within its limit (a client sending more is cut off as it sends), and
parsed once, with a clear error for bytes that are not JSON or not UTF-8; then validated by
its protocol and held to the depth limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.types import Receive

from gateway.errors import InvalidRequest, PayloadTooLarge
from gateway.http.validate import json_depth_within


async def read_body(headers: dict[bytes, bytes], receive: Receive, limit: int) -> bytes:
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidRequest("client disconnected while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over the {limit}-byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_body(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("the request body is not valid UTF-8") from None
        raise InvalidRequest("the request body is not valid JSON") from None


def checked_body(raw: bytes, validate: Callable[[Any], None], max_depth: int) -> Any:
    """The parsed body, once its protocol's validation and the depth limit have passed."""
    body = parse_body(raw)
    validate(body)
    if not json_depth_within(body, max_depth):
        raise InvalidRequest(f"the request nests objects or arrays deeper than {max_depth} levels")
    return body
