"""Reject a Responses request the way OpenAI would, before any upstream sees it: only the
fields the gateway reads itself, each error naming its parameter. Native pass-through is
never stricter than the upstream: item and tool kinds it does not know, and items missing
what only a translation needs (a `call_id`), pass — a translated target that cannot carry
them is a skip with a named reason, not a 400 for every target."""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest
from gateway.pipeline.ingress.fields import is_int, is_number
from gateway.pipeline.ingress.openai_validate import too_many_tools
from gateway.providers.translate.responses_openai import offered_tools

MAX_METADATA_KEYS = 16
_CHOICES = frozenset({"auto", "none", "required"})
_TEXT_PARTS = frozenset({"input_text", "output_text"})


def validate_responses(body: Any) -> None:
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a string", param="model")
    _input(body.get("input"))
    for name in ("instructions", "previous_response_id", "user", "prompt_cache_key"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise InvalidRequest(f"'{name}' must be a string", param=name)
    for name in ("stream", "store", "parallel_tool_calls", "background"):
        if name in body and body[name] is not None and not isinstance(body[name], bool):
            raise InvalidRequest(f"'{name}' must be a boolean", param=name)
    if body.get("background"):
        raise InvalidRequest("background responses are not supported", param="background")
    _int(body, "max_output_tokens", 1)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and len(metadata) <= MAX_METADATA_KEYS
        and all(isinstance(v, str) for v in metadata.values())
    ):
        raise InvalidRequest(
            f"'metadata' must be an object of at most {MAX_METADATA_KEYS} string values",
            param="metadata",
        )
    _tools(body.get("tools"))
    too_many_tools(_offered(body))
    _tool_choice(body.get("tool_choice"))
    _text(body.get("text"))
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise InvalidRequest("'reasoning' must be an object", param="reasoning")


def _input(given: Any) -> None:
    if isinstance(given, str):
        return
    if not isinstance(given, list) or not given:
        raise InvalidRequest(
            "'input' must be a string or a non-empty array of items", param="input"
        )
    for i, item in enumerate(given):
        at = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{at} must be an object", param=at)
        kind = item.get("type", "message")
        if kind == "message":
            if not isinstance(item.get("role"), str):
                raise InvalidRequest(f"{at}.role must be a string", param=f"{at}.role")
            content = item.get("content")
            if not isinstance(content, str | list):
                raise InvalidRequest(
                    f"{at}.content must be a string or an array", param=f"{at}.content"
                )
            for j, part in enumerate(content if isinstance(content, list) else []):
                _part(part, f"{at}.content[{j}]")
        elif not isinstance(kind, str):
            raise InvalidRequest(f"{at}.type must be a string", param=f"{at}.type")


def _part(part: Any, where: str) -> None:
    if not (isinstance(part, dict) and isinstance(part.get("type"), str)):
        raise InvalidRequest(f"{where} must be an object with a type", param=where)
    if part["type"] in _TEXT_PARTS and not isinstance(part.get("text"), str):
        raise InvalidRequest(f"{where}.text must be a string", param=f"{where}.text")


def _offered(body: dict[str, Any]) -> int:
    """Tools offered, namespaces opened: each of their tools counts."""
    count = 0
    for tool in offered_tools(body.get("tools"), body.get("input")):
        inner = tool.get("tools")
        count += len(inner) if isinstance(inner, list) else 1
    return count


def _tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array", param="tools")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise InvalidRequest(f"tools[{i}] must be an object with a type", param=f"tools[{i}]")
        if tool["type"] == "function" and not isinstance(tool.get("name"), str):
            raise InvalidRequest(f"tools[{i}].name must be a string", param=f"tools[{i}].name")
        parameters = tool.get("parameters")
        if tool["type"] == "function" and not (parameters is None or isinstance(parameters, dict)):
            where = f"tools[{i}].parameters"
            raise InvalidRequest(f"{where} must be a JSON Schema object", param=where)


def _tool_choice(choice: Any) -> None:
    if choice is None or (isinstance(choice, str) and choice in _CHOICES):
        return
    if not (isinstance(choice, dict) and isinstance(choice.get("type"), str)):
        raise InvalidRequest(
            "'tool_choice' must be auto, none, required or an object", param="tool_choice"
        )
    kind = choice["type"]
    if kind in ("function", "custom") and not isinstance(choice.get("name"), str):
        raise InvalidRequest(f"tool_choice: a {kind} choice names its tool", param="tool_choice")
    if kind == "allowed_tools":
        allowed = choice.get("tools")
        if choice.get("mode") not in ("auto", "required") or not (
            isinstance(allowed, list)
            and all(isinstance(t, dict) and isinstance(t.get("type"), str) for t in allowed)
        ):
            raise InvalidRequest(
                "tool_choice: allowed_tools takes a mode (auto or required) and a list of tools",
                param="tool_choice",
            )


def _text(text: Any) -> None:
    if text is None:
        return
    fmt = text.get("format") if isinstance(text, dict) else None
    if not isinstance(text, dict) or (fmt is not None and not isinstance(fmt, dict)):
        raise InvalidRequest("'text' must be an object with a format object", param="text")
    schema = isinstance(fmt, dict) and fmt.get("type") == "json_schema"
    if schema and not (isinstance(fmt.get("name"), str) and isinstance(fmt.get("schema"), dict)):  # type: ignore[union-attr]
        raise InvalidRequest(
            "text.format json_schema needs a name and a schema", param="text.format"
        )


def _int(body: dict[str, Any], name: str, low: int) -> None:
    value = body.get(name)
    if value is not None and not is_int(value, low):
        raise InvalidRequest(f"'{name}' must be an integer ≥ {low}", param=name)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not is_number(value, low, high):
        raise InvalidRequest(f"'{name}' must be a number from {low} to {high}", param=name)
