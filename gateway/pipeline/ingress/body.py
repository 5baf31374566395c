"""A request body parsed once, with a clear error for bytes that are not JSON or not UTF-8;
then validated by its protocol and held to the depth limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from gateway.errors import InvalidRequest
from gateway.pipeline.ingress.openai_validate import json_depth_within
from gateway.pipeline.ports import Inbound


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


async def read_whole(inbound: Inbound, limit: int) -> bytes:
    """The request's body, which it cannot be served without."""
    raw = await inbound.read_body(limit)
    if raw is None:
        raise InvalidRequest("client disconnected while sending the body")
    return raw
