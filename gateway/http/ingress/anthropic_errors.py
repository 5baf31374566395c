"""Errors in Anthropic's format, for clients that speak the Messages API: `{"type": "error",
"error": {"type", "message"}, "request_id"}` with Anthropic's statuses — the gateway's error
tree mapped by status, never by message. Overload (every target rate-limited or overloaded,
or no ledger row can be kept) is Anthropic's 529 `overloaded_error`, which the SDKs retry."""

from __future__ import annotations

import orjson

from gateway.errors import AllTargetsFailed, LedgerUnavailable, SpilloverError
from gateway.http.edge import protocol_headers

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
