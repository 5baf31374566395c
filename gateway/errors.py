"""One error tree for the whole gateway. Retry and failover rules read these types; nothing
ever classifies an error by its message text. Each class carries what every reader needs:
its status to the client, its `error_class` (the one label metrics, traces, logs and the
ledger's `error_class` column use — a closed set, `ERROR_CLASSES`), whether another target
may succeed (`retryable`) and how long to wait (`retry_after`). `gateway.error_wire` renders
them in each client protocol.

    SpilloverError                      status  error_class
    ├── ClientError ............ the request itself is wrong; answered by us, never retried
    │   ├── InvalidRequest ........ 400    invalid_request
    │   ├── AuthenticationFailed .. 401    authentication_failed
    │   ├── PermissionDenied ...... 403    permission_denied
    │   ├── NotFound .............. 404    not_found (no such path or stored response)
    │   ├── MethodNotAllowed ...... 405    method_not_allowed
    │   ├── Conflict .............. 409    conflict (admin: refused by this gateway's setup)
    │   ├── ModelNotFound ......... 404    model_not_found
    │   ├── PayloadTooLarge ....... 413    payload_too_large
    │   ├── GatewayRateLimited .... 429    gateway_rate_limited (our own limits)
    │   │   └── BudgetExceeded .... 429    budget_exceeded (a hard budget is spent)
    │   └── StoredQuotaReached .... 429    stored_quota_reached
    ├── UpstreamFailure ........ one attempt at one target failed
    │   ├── UpstreamRateLimited ... 429 upstream, with retry_after     rate_limited      retryable
    │   ├── Overloaded ............ 503 / 529 upstream                 overloaded        retryable
    │   ├── Timeout ............... connect | first_byte | idle | total timeout          retryable
    │   ├── ConnectFailed ......... refused, reset, DNS                connect_failed    retryable
    │   ├── UpstreamStatusError ... other status (5xx retryable)       upstream_error
    │   ├── UpstreamAuthFailed .... the upstream refused *our* key     auth_failed       retryable
    │   ├── Unsupported ........... the target cannot serve this       unsupported   (a skip)
    │   ├── Shed .................. our own pool is full, by policy    shed              retryable
    │   ├── ContextTooLong ........ prompt over the model's window     context_too_long
    │   ├── ContentFiltered ....... the upstream's safety filter       content_filtered
    │   └── UpstreamBadRequest .... the upstream says it is wrong      bad_request
    ├── StreamInterrupted ...... 502   stream_interrupted (after bytes reached the client)
    ├── LedgerUnavailable ...... 503   ledger_unavailable (no row could be kept: no answer)
    ├── LaneUnavailable ........ 503   heavy_lane_unavailable
    ├── InternalError .......... 500   internal_error (a bug of ours; details in the log only)
    └── AllTargetsFailed ....... every candidate failed; carries every attempt
                                 504 upstream_timeout | 503 upstream_unavailable
                                 | 502 upstream_failed

Foreign exceptions (aiohttp, litellm) are mapped into this tree in one place:
`gateway.providers.upstream_errors`.
"""

from __future__ import annotations

from typing import Literal

from gateway.attempt_record import AttemptRecord

TimeoutPhase = Literal["connect", "first_byte", "idle", "total"]


class SpilloverError(Exception):
    status: int = 500
    error_class: str = "internal_error"
    error_type: str = "api_error"  # OpenAI's `type`
    code: str | None = None  # OpenAI's `code`: what SDKs and clients match on
    retryable: bool = False
    retry_after: float | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClientError(SpilloverError):
    status = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(ClientError):
    status = 400
    error_class = "invalid_request"


class AuthenticationFailed(ClientError):
    status = 401
    error_class = "authentication_failed"
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ClientError):
    status = 403
    error_class = "permission_denied"
    error_type = "permission_error"
    code = "permission_denied"


class NotFound(ClientError):
    status = 404
    error_class = "not_found"
    code = "not_found"


class MethodNotAllowed(ClientError):
    status = 405
    error_class = "method_not_allowed"
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow


class Conflict(ClientError):
    status = 409
    error_class = "conflict"
    code = "conflict"


class ModelNotFound(ClientError):
    status = 404
    error_class = "model_not_found"
    code = "model_not_found"


class PayloadTooLarge(ClientError):
    status = 413
    error_class = "payload_too_large"
    code = "request_too_large"


class GatewayRateLimited(ClientError):
    status = 429
    error_class = "gateway_rate_limited"
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ):
        super().__init__(message, code=code)
        self.retry_after = retry_after
        self.headers = headers or {}


class BudgetExceeded(GatewayRateLimited):
    """A hard budget is spent: Retry-After is when its period resets."""

    error_class = "budget_exceeded"
    code = "budget_exceeded"


class StoredQuotaReached(ClientError):
    """No Retry-After: only deleting stored responses, or their expiry, makes room."""

    status = 429
    error_class = "stored_quota_reached"
    error_type = "insufficient_quota"
    code = "stored_responses_quota"


class LedgerUnavailable(SpilloverError):
    """No row could be kept for this request (the journal is full and the database away):
    refused rather than answered without a bill."""

    status = 503
    error_class = "ledger_unavailable"
    code = "ledger_unavailable"

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LaneUnavailable(SpilloverError):
    """The heavy lane went away as a request was handed to it; the next one is served by
    the workers until the lane is back."""

    status = 503
    error_class = "heavy_lane_unavailable"
    code = "heavy_lane_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.retry_after = 1.0


class InternalError(SpilloverError):
    """A bug of ours; the details are in the log, never in the answer."""

    status = 500
    error_class = "internal_error"
    code = "internal_error"


class UpstreamFailure(SpilloverError):
    """One attempt failed. `retryable` means: another target may well succeed."""

    retryable = True
    error_class = "upstream_error"
    # False when the failure says nothing about the target as a whole (a pool that shed by
    # policy, or one replica of a pool that has others): no breaker count, no cool-down.
    counts_against_target: bool = True
    # True for a failure that belongs to this request alone (a drill fault scoped to it by
    # `x-spillover-drill`): it is recorded on the request, never in shared routing state.
    private: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.upstream_status = status


class UpstreamRateLimited(UpstreamFailure):
    error_class = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None, status: int | None = 429):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class Overloaded(UpstreamFailure):
    error_class = "overloaded"

    def __init__(self, message: str, *, retry_after: float | None = None, status: int | None = 503):
        super().__init__(message, status=status)
        self.retry_after = retry_after


class Timeout(UpstreamFailure):
    error_class = "timeout"

    def __init__(self, message: str, *, phase: TimeoutPhase) -> None:
        super().__init__(message)
        self.phase = phase


class ConnectFailed(UpstreamFailure):
    error_class = "connect_failed"


class UpstreamStatusError(UpstreamFailure):
    """5xx, or 404/408/409: the target (not the request) is wrong or slow, so try another."""

    error_class = "upstream_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.retryable = status is None or status >= 500 or status in (404, 408, 409)


class UpstreamAuthFailed(UpstreamFailure):
    error_class = "auth_failed"


class Unsupported(UpstreamFailure):
    """This target cannot serve this request (an endpoint, a parameter, a content part it
    has no way to express): the next target is tried, and this one is not blamed."""

    error_class = "unsupported"
    counts_against_target = False


class Shed(UpstreamFailure):
    """The self-hosted pool refused the request under its admission policy. Another target
    may take it; the pool is not unhealthy for it (no breaker count, no cool-down)."""

    error_class = "shed"
    counts_against_target = False

    def __init__(self, message: str, *, reason: str, retry_after: float) -> None:
        super().__init__(message, status=503)
        self.reason = reason
        self.retry_after = retry_after


class ContextTooLong(UpstreamFailure):
    retryable = False
    error_class = "context_too_long"
    code = "context_length_exceeded"


class ContentFiltered(UpstreamFailure):
    retryable = False
    error_class = "content_filtered"
    code = "content_filter"


class UpstreamBadRequest(UpstreamFailure):
    retryable = False
    error_class = "bad_request"

    def __init__(self, message: str, *, status: int | None = 400, param: str | None = None) -> None:
        super().__init__(message, status=status)
        self.param = param


class StreamInterrupted(SpilloverError):
    """The upstream failed after the client had bytes; the stream ends with an error event."""

    status = 502
    error_class = "stream_interrupted"
    code = "stream_interrupted"

    def __init__(self, message: str, cause: UpstreamFailure | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class AllTargetsFailed(SpilloverError):
    """Every candidate failed or was skipped. 504 when the deadline ran out or every failure
    was a timeout; 503 when a target was rate-limited, overloaded, cooling down or had its
    circuit open (with the shortest Retry-After); else 502."""

    def __init__(
        self,
        attempts: list[AttemptRecord],
        failures: list[UpstreamFailure],
        skipped_retry_after: float | None = None,
        deadline: bool = False,
    ) -> None:
        self.attempts = attempts
        self.failures = failures
        waits = [
            f.retry_after
            for f in failures
            if isinstance(f, UpstreamRateLimited | Overloaded | Shed) and f.retry_after is not None
        ]
        if skipped_retry_after is not None:
            waits.append(skipped_retry_after)
        self.retry_after: float | None = min(waits) if waits else None
        if deadline or (failures and all(isinstance(f, Timeout) for f in failures)):
            self.status, self.code = 504, "upstream_timeout"
        elif skipped_retry_after is not None or any(
            isinstance(f, UpstreamRateLimited | Overloaded | Shed) for f in failures
        ):
            self.status, self.code = 503, "upstream_unavailable"
            if self.retry_after is None:
                self.retry_after = 1.0
        else:
            self.status, self.code = 502, "upstream_failed"
        self.error_class = self.code
        self.error_type = "api_error"
        parts = [
            f"{a.provider}/{a.model}: {a.error_class}"
            + (f" {a.upstream_status}" if a.upstream_status else "")
            + (f" ({a.detail})" if a.detail else "")
            for a in attempts
        ]
        super().__init__(f"all {len(attempts)} targets failed: " + "; ".join(parts))


# Every value an `error_class` takes — in the ledger's column, the metrics' labels, the spans
# and the log lines: the labels of the tree above, and nothing else.
ERROR_CLASSES = frozenset(
    {
        "invalid_request", "authentication_failed", "permission_denied", "not_found",
        "method_not_allowed", "conflict", "model_not_found", "payload_too_large",
        "gateway_rate_limited", "budget_exceeded", "stored_quota_reached",
        "rate_limited", "overloaded", "timeout", "connect_failed", "upstream_error",
        "auth_failed", "unsupported", "shed", "context_too_long", "content_filtered",
        "bad_request",
        "stream_interrupted", "ledger_unavailable", "heavy_lane_unavailable", "internal_error",
        "upstream_timeout", "upstream_unavailable", "upstream_failed",
    }
)  # fmt: skip
