"""Foreign failures become our error tree by status, structured code, headers and type."""

from __future__ import annotations

import orjson
import pytest

from gateway.attempt_record import AttemptRecord
from gateway.errors import (
    AllTargetsFailed,
    ConnectFailed,
    ContentFiltered,
    ContextTooLong,
    Overloaded,
    Timeout,
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamStatusError,
)
from gateway.providers.upstream_errors import from_status, from_stream_error, from_transport
from gateway.upstream.errors import (
    AnswerTimeout,
    BadRequestHead,
    ConnectError,
    ConnectTimeout,
    Disconnected,
    MalformedAnswer,
)


def _openai_error(code: str | None, message: str = "m") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "x", "param": "p", "code": code}})


def test_rate_limit_reads_retry_after_ms_before_seconds() -> None:
    failure = from_status(429, {"retry-after-ms": "1500", "retry-after": "9"}, b"")
    assert isinstance(failure, UpstreamRateLimited) and failure.retry_after == 1.5
    assert failure.retryable
    failure = from_status(429, {"retry-after": "3"}, b"")
    assert isinstance(failure, UpstreamRateLimited) and failure.retry_after == 3.0


@pytest.mark.parametrize("status", [503, 529])
def test_overloaded(status: int) -> None:
    failure = from_status(status, {"retry-after": "2"}, b"")
    assert isinstance(failure, Overloaded) and failure.retry_after == 2.0


def test_context_and_filter_by_structured_code_not_message() -> None:
    assert isinstance(
        from_status(400, {}, _openai_error("context_length_exceeded")), ContextTooLong
    )
    assert isinstance(from_status(400, {}, _openai_error("content_filter")), ContentFiltered)
    # The same words in a message are not a classification.
    plain = from_status(400, {}, _openai_error(None, "context_length_exceeded content_filter"))
    assert isinstance(plain, UpstreamBadRequest) and not plain.retryable
    assert plain.param == "p"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        # vLLM 0.32, measured: the parameter is named.
        (400, {"error": {"message": "This model's maximum context length is 2048 tokens. However, "
               "your prompt contains at least 2049 input tokens, which exceeds this limit even "
               "without any output tokens. (parameter=input_tokens, value=2049)",
               "type": "BadRequestError", "param": "input_tokens", "code": 400}}),
        # Older vLLM: only the words, and no parameter.
        (400, {"error": {"message": "This model's maximum context length is 2048 tokens. However, "
               "you requested 4013 tokens (3997 in the messages, 16 in the completion).",
               "type": "BadRequestError", "param": None, "code": 400}}),
        # Anthropic.
        (400, {"type": "error", "error": {"type": "invalid_request_error",
               "message": "prompt is too long: 210000 tokens > 200000 maximum"}}),
    ],
)  # fmt: skip
def test_a_prompt_over_the_window_is_known_however_the_upstream_words_it(
    status: int, body: dict[str, object]
) -> None:
    failure = from_status(status, {}, orjson.dumps(body))
    assert isinstance(failure, ContextTooLong) and not failure.retryable
    # The words count on a client error only: a 5xx that quotes them is the upstream's fault.
    assert not isinstance(from_status(500, {}, orjson.dumps(body)), ContextTooLong)


def test_auth_failure_never_echoes_the_upstream_message() -> None:
    failure = from_status(401, {}, _openai_error("invalid_api_key", "Incorrect key sk-abc…xyz"))
    assert isinstance(failure, UpstreamAuthFailed) and failure.retryable
    assert "sk-" not in failure.message


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (502, True), (404, True), (409, True), (422, False)]
)
def test_other_statuses(status: int, retryable: bool) -> None:
    failure = from_status(status, {}, b"not json")
    assert failure.retryable is retryable
    assert isinstance(failure, UpstreamStatusError | UpstreamBadRequest)


def test_anthropic_stream_error_event() -> None:
    assert isinstance(from_stream_error({"type": "overloaded_error", "message": "x"}), Overloaded)
    assert isinstance(
        from_stream_error({"type": "rate_limit_error", "message": "x"}), UpstreamRateLimited
    )


def test_the_upstream_clients_failures_by_type_and_phase() -> None:
    connect = from_transport(ConnectTimeout("connect timed out"))
    assert isinstance(connect, Timeout) and connect.phase == "connect"
    idle = from_transport(AnswerTimeout("late", "idle"))
    assert isinstance(idle, Timeout) and idle.phase == "idle"
    first = from_transport(AnswerTimeout("late", "first_byte"))
    assert isinstance(first, Timeout) and first.phase == "first_byte"
    refused = from_transport(ConnectError("cannot connect (ConnectionRefusedError)"))
    assert isinstance(refused, ConnectFailed) and "ConnectionRefusedError" in refused.message
    cut = from_transport(Disconnected("closed", received=True))
    assert isinstance(cut, ConnectFailed) and "mid-response" in cut.message
    garbled = from_transport(MalformedAnswer("unreadable HTTP answer"))
    assert isinstance(garbled, UpstreamStatusError) and garbled.retryable
    smuggled = from_transport(BadRequestHead("header 'x' carries a line break"))
    assert isinstance(smuggled, UpstreamBadRequest) and not smuggled.retryable


def _record(provider: str, error: str) -> AttemptRecord:
    return AttemptRecord(provider, "m", "failed", error, None, "", 1.0)


def test_all_targets_failed_status_choice() -> None:
    timeouts = AllTargetsFailed([_record("a", "timeout")], [Timeout("t", phase="total")])
    assert timeouts.status == 504
    mixed = AllTargetsFailed(
        [_record("a", "rate_limited"), _record("b", "timeout")],
        [UpstreamRateLimited("r", retry_after=4), Timeout("t", phase="total")],
    )
    assert mixed.status == 503 and mixed.retry_after == 4
    other = AllTargetsFailed([_record("a", "connect_failed")], [ConnectFailed("c")])
    assert other.status == 502 and "a/m: connect_failed" in other.message


def _litellm_error(kind: str, cause: BaseException | None = None, **kwargs: object) -> Exception:
    from gateway.providers.litellm import import_litellm

    lx = import_litellm().exceptions
    exc: Exception = getattr(lx, kind)(message="m", llm_provider="openai", model="gpt-4o", **kwargs)
    exc.__cause__ = cause
    return exc


def test_litellm_failing_to_build_a_request_is_a_skip_not_a_failure() -> None:
    from gateway.errors import Unsupported
    from gateway.providers.upstream_errors import from_litellm

    translation = _litellm_error("APIConnectionError", AttributeError("'int' has no 'get'"))
    assert isinstance(from_litellm(translation), Unsupported)
    assert not from_litellm(translation).counts_against_target
    assert isinstance(from_litellm(KeyError("messages")), Unsupported)
    refused = _litellm_error("APIConnectionError", ConnectionRefusedError())
    assert not isinstance(from_litellm(refused), Unsupported)
    assert from_litellm(refused).retryable


def test_litellm_client_errors_are_never_retried_nor_counted() -> None:
    import httpx

    from gateway.errors import Unsupported, UpstreamBadRequest
    from gateway.providers.upstream_errors import from_litellm

    response = httpx.Response(400, request=httpx.Request("POST", "http://x"))
    bad = from_litellm(_litellm_error("BadRequestError", response=response))
    assert isinstance(bad, UpstreamBadRequest) and not bad.retryable
    unsupported = from_litellm(_litellm_error("UnsupportedParamsError", response=response))
    assert isinstance(unsupported, Unsupported)
