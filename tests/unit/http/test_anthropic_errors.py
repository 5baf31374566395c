"""Anthropic-format errors: each of the gateway's errors becomes the status and type that the
official `anthropic` SDK turns into its own exception class, with `request-id`, and
`retry-after` where the client should wait."""

from __future__ import annotations

import httpx
import orjson
import pytest
from anthropic import Anthropic
from anthropic import _exceptions as sdk

from gateway.attempt_record import AttemptRecord
from gateway.error_wire import anthropic_error
from gateway.errors import (
    AllTargetsFailed,
    AuthenticationFailed,
    GatewayRateLimited,
    InternalError,
    InvalidRequest,
    LedgerUnavailable,
    MethodNotAllowed,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    SpilloverError,
    Timeout,
)

OVERLOADED = AllTargetsFailed(
    [AttemptRecord("p", "m", "failed", "overloaded", 529, "busy", 3.0)],
    [Overloaded("busy", retry_after=7)],
)
TIMED_OUT = AllTargetsFailed(
    [AttemptRecord("p", "m", "failed", "timeout", None, "", 3.0)],
    [Timeout("slow", phase="total")],
)
CASES = [
    (InvalidRequest("bad field", param="max_tokens"), 400, "invalid_request_error", sdk.BadRequestError),
    (AuthenticationFailed("no key"), 401, "authentication_error", sdk.AuthenticationError),
    (PermissionDenied("not admin"), 403, "permission_error", sdk.PermissionDeniedError),
    (ModelNotFound("no such model"), 404, "not_found_error", sdk.NotFoundError),
    (MethodNotAllowed("GET?", allow="POST"), 405, "invalid_request_error", sdk.APIStatusError),
    (PayloadTooLarge("too big"), 413, "request_too_large", sdk.APIStatusError),
    (OVERLOADED, 529, "overloaded_error", sdk.OverloadedError),
    (LedgerUnavailable("journal full", retry_after=3), 529, "overloaded_error", sdk.OverloadedError),
    (TIMED_OUT, 504, "api_error", sdk.InternalServerError),
    (InternalError("bug"), 500, "api_error", sdk.InternalServerError),
]  # fmt: skip


@pytest.mark.parametrize(("exc", "status", "kind", "raised"), CASES)
def test_each_error_is_the_sdks_own_exception(
    exc: SpilloverError, status: int, kind: str, raised: type[Exception]
) -> None:
    got, body, headers = anthropic_error(exc, "req_123")
    assert got == status
    parsed = orjson.loads(body)
    assert parsed == {
        "type": "error",
        "error": {"type": kind, "message": exc.message},
        "request_id": "req_123",
    }
    assert (b"request-id", b"req_123") in headers
    client = Anthropic(api_key="k", base_url="http://gateway.invalid")
    response = httpx.Response(status, json=parsed, request=httpx.Request("POST", "http://x"))
    error = client._make_status_error("error", body=parsed, response=response)
    assert isinstance(error, raised)


def test_waiting_errors_say_how_long() -> None:
    limited = GatewayRateLimited("Rate limit reached for key:app", retry_after=12, headers={})
    status, _, headers = anthropic_error(limited, "req_1")
    assert status == 429 and (b"retry-after", b"12") in headers
    status, _, headers = anthropic_error(OVERLOADED, "req_2")
    assert status == 529 and (b"retry-after", b"7") in headers
