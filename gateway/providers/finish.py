"""Why an answer ended, as each wire says it, for the trace's
`gen_ai.response.finish_reasons`: OpenAI's `choices[].finish_reason`, Anthropic's
`stop_reason`, the Responses API's `status` (or its `incomplete_details.reason`). Read only
while tracing is on; a cheap byte test comes before any parse of a stream event."""

from __future__ import annotations

from typing import Any

import orjson

_OPENAI = (b'"finish_reason":"', b'"finish_reason": "')
_ANTHROPIC = (b'"stop_reason":"', b'"stop_reason": "')
_RESPONSES = (b"response.completed", b"response.incomplete", b"response.failed")
_MARKERS = {"openai": _OPENAI, "anthropic": _ANTHROPIC, "responses": _RESPONSES}


def from_body(protocol: str, body: bytes) -> list[str]:
    """The finish reasons of a whole answer in `protocol`'s wire form."""
    try:
        return from_object(protocol, orjson.loads(body))
    except orjson.JSONDecodeError:
        return []


def from_object(protocol: str, answer: Any) -> list[str]:
    """The same, of an answer already read."""
    try:
        return _reasons(protocol, answer)
    except (AttributeError, TypeError):
        return []


def see_event(protocol: str, event: bytes, into: list[str]) -> None:
    """Add the finish reasons one stream event states (most state none)."""
    if not any(marker in event for marker in _MARKERS.get(protocol, ())):
        return
    start = event.find(b"data: ")
    if start < 0:
        return
    try:
        payload = orjson.loads(event[start + 6 :].strip())
        if protocol == "anthropic":
            payload = payload.get("delta") or payload.get("message") or {}
        elif protocol != "openai":
            payload = payload.get("response") or {}
        into.extend(_reasons(protocol, payload))
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        return


def _reasons(protocol: str, payload: Any) -> list[str]:
    if protocol == "openai":
        return [
            str(choice["finish_reason"])
            for choice in payload.get("choices") or []
            if isinstance(choice, dict) and choice.get("finish_reason")
        ]
    if protocol == "anthropic":
        reason = payload.get("stop_reason")
        return [str(reason)] if reason else []
    details = payload.get("incomplete_details") or {}
    reason = details.get("reason") if isinstance(details, dict) else None
    status = payload.get("status")
    return [str(reason or status)] if reason or status else []
