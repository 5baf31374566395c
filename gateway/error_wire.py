"""The error tree on the wire. OpenAI's format (`{"error": {message, type, param, code}}`),
which every surface but the Messages API answers in, and the headers a status asks for
(Retry-After, the limit headers, Allow). Anthropic's format for clients of the Messages API:
`{"type": "error", "error": {"type", "message"}, "request_id"}` with Anthropic's statuses —
the gateway's error tree mapped by status, never by message. Overload (every target
rate-limited or overloaded, or no ledger row can be kept) is Anthropic's 529
`overloaded_error`, which the SDKs retry."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import (
    AllTargetsFailed,
    GatewayRateLimited,
    LedgerUnavailable,
    MethodNotAllowed,
    SpilloverError,
)


def error_body(exc: SpilloverError) -> bytes:
    error: dict[str, Any] = {
        "message": exc.message,
        "type": exc.error_type,
        "param": getattr(exc, "param", None),
        "code": exc.code,
    }
    if isinstance(exc, AllTargetsFailed):
        error["attempts"] = [a.as_dict() for a in exc.attempts]
    return orjson.dumps({"error": error})


def protocol_headers(exc: SpilloverError) -> list[tuple[bytes, bytes]]:
    """What the status asks of the answer: Retry-After, the limit headers, Allow."""
    headers: list[tuple[bytes, bytes]] = []
    retry_after = exc.retry_after
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
    if isinstance(exc, GatewayRateLimited):
        headers.extend((k.encode(), v.encode()) for k, v in exc.headers.items())
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", exc.allow.encode()))
    return headers


_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}
OVERLOADED = 529


def status_and_type(exc: SpilloverError) -> tuple[int, str]:
    status = exc.status
    if status == 503 and isinstance(exc, AllTargetsFailed | LedgerUnavailable):
        return OVERLOADED, "overloaded_error"
    if status in _TYPES:
        return status, _TYPES[status]
    if status < 500:
        return status, "invalid_request_error"  # Anthropic's type for other 4XX statuses
    return status, "api_error"


def anthropic_error(
    exc: SpilloverError, request_id: str
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The status, body and headers an Anthropic client expects for `exc`."""
    status, kind = status_and_type(exc)
    body = orjson.dumps(
        {"type": "error", "error": {"type": kind, "message": exc.message}, "request_id": request_id}
    )
    headers = [(b"request-id", request_id.encode()), *protocol_headers(exc)]
    return status, body, headers
