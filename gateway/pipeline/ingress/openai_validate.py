"""Reject what an upstream would reject, before any upstream sees it. Only the fields the
gateway must understand are checked; everything else passes through untouched."""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest
from gateway.pipeline.ingress.fields import is_int, is_number
from policies.schema_base import Endpoint

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
        _message(message, f"messages[{i}]")
    _streaming(body)
    _int(body, "max_tokens", 1)
    _int(body, "max_completion_tokens", 1)
    _int(body, "n", 1, 128)
    _int(body, "top_logprobs", 0, 20)
    _int(body, "seed", -(2**63), 2**63 - 1)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    _bool(body, "parallel_tool_calls")
    _bool(body, "logprobs")
    _string(body, "user")
    _object(body, "logit_bias")
    _object(body, "metadata")
    _stop(body)
    _tools(body.get("tools"))
    _tool_choice(body.get("tool_choice"))
    response_format = body.get("response_format")
    if response_format is not None and not (
        isinstance(response_format, dict) and isinstance(response_format.get("type"), str)
    ):
        raise InvalidRequest(
            "'response_format' must be an object with a 'type'", param="response_format"
        )


def _message(message: Any, at: str) -> None:
    if not isinstance(message, dict):
        raise InvalidRequest(f"{at} must be an object", param=at)
    role = message.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidRequest(
            f"{at}.role must be one of {', '.join(sorted(_ROLES))}", param=f"{at}.role"
        )
    content = message.get("content")
    if content is None:
        if role in ("user", "system", "developer", "tool"):
            raise InvalidRequest(f"{at}.content is required", param=f"{at}.content")
    elif isinstance(content, list):
        text_only = role in ("system", "developer", "tool")
        for j, part in enumerate(content):
            _part(part, f"{at}.content[{j}]", text_only)
    elif not isinstance(content, str):
        raise InvalidRequest(
            f"{at}.content must be a string or an array of parts", param=f"{at}.content"
        )
    if "name" in message and not isinstance(message["name"], str):
        raise InvalidRequest(f"{at}.name must be a string", param=f"{at}.name")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise InvalidRequest(f"{at}.tool_call_id is required", param=f"{at}.tool_call_id")
    calls = message.get("tool_calls")
    if calls is None:
        return
    if role != "assistant" or not isinstance(calls, list):
        raise InvalidRequest(
            f"{at}.tool_calls must be an array on an assistant message", param=f"{at}.tool_calls"
        )
    for k, call in enumerate(calls):
        where = f"{at}.tool_calls[{k}]"
        if isinstance(call, dict) and call.get("type", "function") != "function":
            continue  # another tool type (custom, …): the upstream judges it
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not isinstance(function.get("arguments"), str)
            or not isinstance(call.get("id"), str)
        ):
            raise InvalidRequest(
                f"{where} must have an 'id' and a 'function' with a 'name' and 'arguments' strings",
                param=where,
            )


# The part types each carry an object (or string) field of their own name.
_PART_FIELDS: dict[str, tuple[type, ...]] = {
    "text": (str,),
    "refusal": (str,),
    "image_url": (dict, str),
    "input_audio": (dict,),
    "file": (dict,),
}


def _part(part: Any, at: str, text_only: bool) -> None:
    kind = part.get("type") if isinstance(part, dict) else None
    if not isinstance(kind, str):
        raise InvalidRequest(f"{at} must be an object with a 'type'", param=at)
    if text_only and kind != "text":
        raise InvalidRequest(f"{at}: only text parts are allowed here", param=at)
    expected = _PART_FIELDS.get(kind)
    if expected is None:
        return  # a part type newer than this gateway: passed through for the upstream
    value = part.get(kind)
    if not isinstance(value, expected):
        raise InvalidRequest(f"{at}.{kind} is missing or of the wrong type", param=f"{at}.{kind}")
    if kind == "image_url" and isinstance(value, dict) and not isinstance(value.get("url"), str):
        raise InvalidRequest(f"{at}.image_url.url must be a string", param=f"{at}.image_url.url")


def _tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    too_many_tools(len(tools))
    for i, tool in enumerate(tools):
        kind = tool.get("type", "function") if isinstance(tool, dict) else None
        if not isinstance(kind, str):
            raise InvalidRequest(f"tools[{i}] must be an object with a 'type'", param=f"tools[{i}]")
        if kind != "function":
            continue  # another tool type (custom, …): the upstream judges it
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest(
                f"tools[{i}].function.name is required", param=f"tools[{i}].function.name"
            )
        parameters = function.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InvalidRequest(
                f"tools[{i}].function.parameters must be an object",
                param=f"tools[{i}].function.parameters",
            )
        description = function.get("description")
        if description is not None and not isinstance(description, str):
            raise InvalidRequest(
                f"tools[{i}].function.description must be a string",
                param=f"tools[{i}].function.description",
            )


def _tool_choice(choice: Any) -> None:
    if choice is None or choice in ("none", "auto", "required"):
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if not isinstance(kind, str):
        raise InvalidRequest(
            "'tool_choice' must be 'none', 'auto', 'required' or an object with a 'type'",
            param="tool_choice",
        )
    if kind == "function":
        function = choice.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest(
                "tool_choice.function.name is required", param="tool_choice.function.name"
            )


def json_depth_within(value: Any, limit: int) -> bool:
    """Whether no object or array in `value` is nested deeper than `limit` (the top: 1).
    Level by level, testing exact types (parsed JSON has no subclasses): agent-sized bodies
    are mostly leaves, and this is on every request's path."""
    if type(value) is not dict and type(value) is not list:
        return True
    level = [value]
    depth = 1
    while True:
        deeper = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    deeper.append(child)
        if not deeper:
            return True
        if depth >= limit:
            return False
        level = deeper
        depth += 1


def _completions(body: dict[str, Any]) -> None:
    if not _text_or_tokens(body.get("prompt")):
        raise InvalidRequest(
            "'prompt' is required: a string, an array of strings, an array of token ids "
            "or an array of such arrays",
            param="prompt",
        )
    _streaming(body)
    _int(body, "max_tokens", 0)
    _int(body, "n", 1, 128)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _stop(body)


def _embeddings(body: dict[str, Any]) -> None:
    value = body.get("input")
    if value == "" or value == [] or not _text_or_tokens(value):
        raise InvalidRequest(
            "'input' must be a non-empty string, array of strings, array of token ids or "
            "array of such arrays",
            param="input",
        )
    if body.get("encoding_format") not in (None, "float", "base64"):
        raise InvalidRequest(
            "'encoding_format' must be 'float' or 'base64'", param="encoding_format"
        )
    _int(body, "dimensions", 1)
    if body.get("stream"):
        raise InvalidRequest("embeddings cannot be streamed", param="stream")


def _token_ids(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) for t in value)
    )


def _text_or_tokens(value: Any) -> bool:
    """OpenAI's prompt/input: a string, strings, token ids, or arrays of token ids (never an
    empty array)."""
    if isinstance(value, str):
        return True
    if not isinstance(value, list) or not value:
        return False
    return (
        all(isinstance(v, str) for v in value)
        or _token_ids(value)
        or all(_token_ids(v) for v in value)
    )


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


def _bool(body: dict[str, Any], name: str) -> None:
    if name in body and body[name] is not None and not isinstance(body[name], bool):
        raise InvalidRequest(f"'{name}' must be a boolean", param=name)


def _string(body: dict[str, Any], name: str) -> None:
    if name in body and body[name] is not None and not isinstance(body[name], str):
        raise InvalidRequest(f"'{name}' must be a string", param=name)


def _object(body: dict[str, Any], name: str) -> None:
    if name in body and body[name] is not None and not isinstance(body[name], dict):
        raise InvalidRequest(f"'{name}' must be an object", param=name)


def _int(body: dict[str, Any], name: str, low: int, high: int | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if not is_int(value, low, high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise InvalidRequest(f"'{name}' must be an integer {bound}", param=name)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not is_number(value, low, high):
        raise InvalidRequest(f"'{name}' must be a number between {low:g} and {high:g}", param=name)


def _stop(body: dict[str, Any]) -> None:
    stop = body.get("stop")
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) for s in stop):
        raise InvalidRequest("'stop' must be a string or an array of up to 4 strings", param="stop")


# More tools than any client offers (Claude Code and Codex send tens): every tool is parsed,
# checked, translated and counted on the event loop, so the number is bounded for all.
MAX_TOOLS = 512


def too_many_tools(count: int, param: str = "tools") -> None:
    if count > MAX_TOOLS:
        raise InvalidRequest(f"at most {MAX_TOOLS} tools per request (got {count})", param=param)
