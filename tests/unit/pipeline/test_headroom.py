"""Provider rate-limit headers → how long a target has no headroom."""

from __future__ import annotations

from datetime import UTC, datetime

from gateway.pipeline.headroom import exhausted_for


def test_openai_durations() -> None:
    assert exhausted_for({"x-ratelimit-remaining-requests": "3"}, 0) is None
    assert (
        exhausted_for(
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}, 0
        )
        == 360
    )
    assert (
        exhausted_for({"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "250ms"}, 0)
        == 0.25
    )
    assert (
        exhausted_for(
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1h2m3.5s"}, 0
        )
        == 3723.5
    )


def test_anthropic_timestamps() -> None:
    now = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC).timestamp()
    headers = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2026-11-29T12:00:30Z",
    }
    assert exhausted_for(headers, now) == 30
