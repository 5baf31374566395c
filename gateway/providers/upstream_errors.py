"""The one place where foreign failures become our error tree: HTTP statuses and error
bodies of both wire formats, the upstream client's failures, litellm exceptions, and the self-hosted
pool's refusals. By type, status, structured error codes and headers — with one exception:
a prompt over the context window, which Anthropic (`prompt is too long`) and older vLLM
servers say only in words. Those few phrasings are matched here, on client-error statuses
alone (`_CONTEXT_WORDS`), so that failover can send such a request to a larger window."""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Mapping
from typing import Any

import orjson

from fallback_engine.pool import PoolShed
from gateway.errors import (
    ConnectFailed,
    ContentFiltered,
    ContextTooLong,
    Overloaded,
    Shed,
    Timeout,
    TimeoutPhase,
    Unsupported,
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamFailure,
    UpstreamRateLimited,
    UpstreamStatusError,
)
from gateway.providers.base import UpstreamResponse
from gateway.upstream.errors import (
    AnswerTimeout,
    BadRequestHead,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    TransportError,
)

_CONTEXT_CODES = frozenset({"context_length_exceeded", "string_above_max_length"})
# vLLM (0.9+) names the parameter a prompt over the window breaks: its input tokens.
_CONTEXT_PARAMS = ("input_tokens",)  # a tuple: a hostile upstream's param may be any JSON
# How the upstreams that give no code word it: vLLM ("This model's maximum context length is
# 2048 tokens. However, you requested …"), Anthropic ("prompt is too long: 210000 tokens >
# 200000 maximum"), and servers behind litellm or TGI ("input is too long", "exceeds the
# context window").
_CONTEXT_WORDS = re.compile(
    r"maximum context length|prompt is too long|input is too long|exceeds the context window",
    re.IGNORECASE,
)
_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms` (OpenAI), else `retry-after` as seconds or an HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    error = payload.get("error") if isinstance(payload, dict) else None
    return error if isinstance(error, dict) else {}


def upstream_object(raw: bytes) -> dict[str, Any]:
    """An upstream's JSON object; anything else is the upstream's failure (retryable),
    never a crash of ours."""
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        raise UpstreamStatusError("the upstream answered something that is not a JSON object")
    return payload


def answer_object(response: UpstreamResponse) -> dict[str, Any]:
    """A whole answer's JSON object, read from its bytes at most once."""
    if response.parsed is None:
        response.parsed = upstream_object(response.body)
    return response.parsed


def from_status(status: int, headers: Mapping[str, str], body: bytes) -> UpstreamFailure:
    """Map a non-2xx upstream answer (OpenAI or Anthropic error JSON) to our tree."""
    error = _error_object(body)
    code = error.get("code") if isinstance(error.get("code"), str) else None
    upstream_message = str(error.get("message") or "")[:500]
    if status == 429:
        return UpstreamRateLimited(
            "upstream rate limit", retry_after=retry_after_seconds(headers), status=status
        )
    if status in (503, 529):
        return Overloaded(
            "upstream overloaded", retry_after=retry_after_seconds(headers), status=status
        )
    if status in (401, 403):
        # Never echo the upstream's message: it may quote part of our credential.
        return UpstreamAuthFailed(
            f"upstream refused the gateway's credentials ({status})", status=status
        )
    if status == 413 or code in _CONTEXT_CODES or _over_the_window(status, error):
        return ContextTooLong(
            upstream_message or "prompt exceeds the model's context window", status=status
        )
    if code in _FILTER_CODES:
        return ContentFiltered(
            upstream_message or "blocked by the upstream's content filter", status=status
        )
    if status in (404, 408, 409) or status >= 500:
        return UpstreamStatusError(f"upstream returned {status}", status=status)
    param = error.get("param") if isinstance(error.get("param"), str) else None
    return UpstreamBadRequest(
        upstream_message or f"upstream rejected the request ({status})", status=status, param=param
    )


def _over_the_window(status: int, error: Mapping[str, Any]) -> bool:
    """A 400-class refusal that says the prompt is over the model's context window."""
    if status not in (400, 422):
        return False
    if error.get("param") in _CONTEXT_PARAMS:
        return True
    message = error.get("message")
    return isinstance(message, str) and _CONTEXT_WORDS.search(message[:2000]) is not None


_ANTHROPIC_EVENT_STATUS = {
    "rate_limit_error": 429,
    "overloaded_error": 529,
    "api_error": 500,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "invalid_request_error": 400,
    "timeout_error": 504,
}


def from_stream_error(error: Mapping[str, Any]) -> UpstreamFailure:
    """An error event inside a stream (`{"error": {...}}` or Anthropic's `type: error`)."""
    status = _ANTHROPIC_EVENT_STATUS.get(str(error.get("type")), 500)
    if isinstance(error.get("code"), int):
        status = int(error["code"])
    return from_status(status, {}, orjson.dumps({"error": dict(error)}))


def from_transport(exc: TransportError) -> UpstreamFailure:
    """The upstream client's failures (`gateway/upstream/errors.py`), by type."""
    if isinstance(exc, ConnectTimeout):
        return Timeout("connect timed out", phase="connect")
    if isinstance(exc, AnswerTimeout):
        phase: TimeoutPhase = "first_byte" if exc.phase == "first_byte" else "idle"
        return Timeout(f"no answer within the {phase} timeout", phase=phase)
    if isinstance(exc, ConnectError):
        return ConnectFailed(str(exc))
    if isinstance(exc, Disconnected):
        return ConnectFailed(
            "upstream closed the connection mid-response" if exc.received else "connection reset"
        )
    if isinstance(exc, BadRequestHead):
        return UpstreamBadRequest(f"the request cannot be sent upstream: {exc}", status=None)
    return UpstreamStatusError(f"the upstream's answer is not readable HTTP: {exc}")


def late(phase: TimeoutPhase) -> Timeout:
    """A deadline of ours passed (`asyncio.timeout` around the exchange)."""
    return Timeout(f"no answer within the {phase} timeout", phase=phase)


def from_litellm(exc: BaseException) -> UpstreamFailure:
    """litellm's exceptions carry `status_code` and `litellm_response_headers`; its classes
    are subclasses of OpenAI's, so map by the specific classes first, then by status. An
    exception of another kind was raised by litellm's own translation of the request before
    any upstream saw it: this target cannot serve this request (a skip, not a failure)."""
    import openai  # litellm's own dependency; its exceptions all derive from openai's
    from litellm import exceptions as lx  # imported by the litellm adapter already

    if not isinstance(exc, openai.OpenAIError) or _failed_in_translation(exc):
        return Unsupported(f"litellm cannot send this request ({type(exc).__name__})")
    headers = {
        k.lower(): str(v)
        for k, v in dict(getattr(exc, "litellm_response_headers", None) or {}).items()
    }
    if isinstance(exc, lx.ContextWindowExceededError):
        return ContextTooLong("prompt exceeds the model's context window", status=400)
    if isinstance(exc, lx.ContentPolicyViolationError):
        return ContentFiltered("blocked by the upstream's content filter", status=400)
    if isinstance(exc, lx.UnsupportedParamsError):
        return Unsupported("the provider does not support a parameter of this request")
    if isinstance(exc, lx.Timeout):
        return Timeout("litellm call timed out", phase="total")
    if isinstance(exc, lx.RateLimitError):
        return UpstreamRateLimited("upstream rate limit", retry_after=retry_after_seconds(headers))
    if isinstance(exc, lx.AuthenticationError | lx.PermissionDeniedError):
        return UpstreamAuthFailed("upstream refused the gateway's credentials")
    if isinstance(exc, lx.APIConnectionError) and not getattr(exc, "status_code", None):
        return ConnectFailed("cannot reach the upstream")
    status = getattr(exc, "status_code", None)
    if isinstance(exc, lx.BadRequestError | lx.UnprocessableEntityError):
        status = status if isinstance(status, int) and 400 <= status < 500 else 400
    if isinstance(status, int):
        body = orjson.dumps({"error": {"message": "", "code": None}})
        failure = from_status(status, headers, body)
        if isinstance(failure, UpstreamBadRequest):
            return UpstreamBadRequest("the upstream rejected the request", status=status)
        return failure
    return UpstreamStatusError(f"litellm failed ({type(exc).__name__})")


_PROGRAMMING_ERRORS = (AttributeError, TypeError, KeyError, ValueError, IndexError)


def _failed_in_translation(exc: BaseException) -> bool:
    """litellm wraps its own failures to build a request (a body it cannot translate) in
    the same APIConnectionError as a refused connection: the causes tell them apart."""
    import httpx  # litellm's own transport: loaded already when litellm raised

    causes: list[BaseException] = []
    link: BaseException | None = exc.__cause__ or exc.__context__
    while link is not None and len(causes) < 10:
        causes.append(link)
        link = link.__cause__ or link.__context__
    network = any(isinstance(c, OSError | TimeoutError | httpx.TransportError) for c in causes)
    return not network and any(isinstance(c, _PROGRAMMING_ERRORS) for c in causes)


def from_pool_shed(exc: PoolShed) -> Shed:
    return Shed(str(exc), reason=exc.reason, retry_after=exc.retry_after)
