"""Reject what an upstream would reject, before any upstream sees it. Only the fields the
gateway must understand are checked; everything else passes through untouched."""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest
from policies.schema import Endpoint

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def validate(endpoint: Endpoint, body: Any) -> None:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a string", param="model")
    if endpoint == "chat":
        _chat(body)
    elif endpoint == "completions":
        _completions(body)
    else:
        _embeddings(body)


def _chat(body: dict[str, Any]) -> None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty array", param="messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object", param=f"messages[{i}]")
        role = message.get("role")
        if role not in _ROLES:
            raise InvalidRequest(
                f"messages[{i}].role must be one of {', '.join(sorted(_ROLES))}",
                param=f"messages[{i}].role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise InvalidRequest(
                f"messages[{i}].content must be a string or an array of parts",
                param=f"messages[{i}].content",
            )
        if content is None and role in ("user", "system", "developer"):
            raise InvalidRequest(
                f"messages[{i}].content is required", param=f"messages[{i}].content"
            )
    _streaming(body)
    _int(body, "max_tokens", 1)
    _int(body, "max_completion_tokens", 1)
    _int(body, "n", 1, 128)
    _int(body, "top_logprobs", 0, 20)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _stop(body)
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise InvalidRequest("'tools' must be an array", param="tools")
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise InvalidRequest(
                    f"tools[{i}].function.name is required", param=f"tools[{i}].function.name"
                )


def _completions(body: dict[str, Any]) -> None:
    prompt = body.get("prompt")
    if prompt is None or not isinstance(prompt, str | list):
        raise InvalidRequest("'prompt' is required: a string or an array", param="prompt")
    _streaming(body)
    _int(body, "max_tokens", 0)
    _int(body, "n", 1, 128)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _stop(body)


def _embeddings(body: dict[str, Any]) -> None:
    value = body.get("input")
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("'input' must not be empty", param="input")
    elif not isinstance(value, list) or not value:
        raise InvalidRequest("'input' must be a string or a non-empty array", param="input")
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise InvalidRequest(
            "'encoding_format' must be 'float' or 'base64'", param="encoding_format"
        )
    _int(body, "dimensions", 1)
    if body.get("stream"):
        raise InvalidRequest("embeddings cannot be streamed", param="stream")


def _streaming(body: dict[str, Any]) -> None:
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise InvalidRequest(
                "'stream_options' is only allowed when 'stream' is true", param="stream_options"
            )
        if not isinstance(options, dict):
            raise InvalidRequest("'stream_options' must be an object", param="stream_options")


def _int(body: dict[str, Any], name: str, low: int, high: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidRequest(f"'{name}' must be an integer {bound}", param=name)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidRequest(f"'{name}' must be a number between {low:g} and {high:g}", param=name)


def _stop(body: dict[str, Any]) -> None:
    stop = body.get("stop")
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop):
        raise InvalidRequest("'stop' must be a string or an array of up to 4 strings", param="stop")
