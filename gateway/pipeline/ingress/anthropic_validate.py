"""Reject a Messages request the way Anthropic would, before any upstream sees it: the fields
the gateway must understand, each with the path of what is wrong. Block and tool kinds
this gateway does not know pass (they go as sent to Anthropic targets)."""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest
from gateway.pipeline.ingress.fields import is_int, is_number
from gateway.pipeline.ingress.openai_validate import too_many_tools

_ROLES = frozenset({"user", "assistant", "system"})  # `system` turns: see section 3 of the docs
_TOOL_CHOICES = ("auto", "any", "tool", "none")  # a tuple: a hostile type may be any JSON
MAX_STOP_SEQUENCES = 64


def validate_messages(body: Any, count_only: bool = False) -> None:
    """`count_only`: the count_tokens body, which carries no max_tokens."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: a non-empty string is required", param="model")
    if not count_only or "max_tokens" in body:
        _int(body, "max_tokens", 1, required=not count_only)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: a non-empty array is required", param="messages")
    for i, message in enumerate(messages):
        _message(message, f"messages.{i}")
    _system(body.get("system"))
    _stop_sequences(body.get("stop_sequences"))
    _number(body, "temperature", 0, 1)
    _number(body, "top_p", 0, 1)
    _int(body, "top_k", 0)
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest("stream: must be a boolean", param="stream")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise InvalidRequest("metadata: must be an object", param="metadata")
        user = metadata.get("user_id")
        if user is not None and not isinstance(user, str):
            raise InvalidRequest("metadata.user_id: must be a string", param="metadata.user_id")
    _tools(body.get("tools"))
    _tool_choice(body.get("tool_choice"))
    _thinking(body.get("thinking"))


def _message(message: Any, at: str) -> None:
    if not isinstance(message, dict):
        raise InvalidRequest(f"{at}: must be an object", param=at)
    role = message.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidRequest(f"{at}.role: must be 'user' or 'assistant'", param=f"{at}.role")
    _content(message.get("content"), f"{at}.content")


def _content(content: Any, at: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(f"{at}: must be a string or an array of blocks", param=at)
    for j, block in enumerate(content):
        where = f"{at}.{j}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise InvalidRequest(f"{where}: a block must be an object with a 'type'", param=where)
        kind = block["type"]
        if kind == "text" and not isinstance(block.get("text"), str):
            raise InvalidRequest(f"{where}.text: must be a string", param=f"{where}.text")
        if kind == "image":
            _source(block.get("source"), f"{where}.source")
        if kind == "tool_use" and not (
            isinstance(block.get("id"), str)
            and isinstance(block.get("name"), str)
            and isinstance(block.get("input"), dict)
        ):
            raise InvalidRequest(
                f"{where}: tool_use needs a string id and name and an object input", param=where
            )
        if kind == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise InvalidRequest(
                    f"{where}.tool_use_id: must be a string", param=f"{where}.tool_use_id"
                )
            if "content" in block and block["content"] is not None:
                _content(block["content"], f"{where}.content")


def _source(source: Any, at: str) -> None:
    if not isinstance(source, dict) or source.get("type") not in ("base64", "url", "file"):
        raise InvalidRequest(f"{at}: must be a base64, url or file source", param=at)
    if source["type"] == "base64" and not (
        isinstance(source.get("data"), str) and isinstance(source.get("media_type"), str)
    ):
        raise InvalidRequest(f"{at}: base64 sources need data and media_type", param=at)
    if source["type"] == "url" and not isinstance(source.get("url"), str):
        raise InvalidRequest(f"{at}.url: must be a string", param=f"{at}.url")


def _system(system: Any) -> None:
    if system is None or isinstance(system, str):
        return
    if not isinstance(system, list):
        raise InvalidRequest("system: must be a string or an array of text blocks", param="system")
    for j, block in enumerate(system):
        if not (isinstance(block, dict) and block.get("type") == "text"):
            raise InvalidRequest(f"system.{j}: must be a text block", param=f"system.{j}")
        if not isinstance(block.get("text"), str):
            raise InvalidRequest(f"system.{j}.text: must be a string", param=f"system.{j}.text")


def _stop_sequences(stops: Any) -> None:
    if stops is None:
        return
    if (
        not isinstance(stops, list)
        or len(stops) > MAX_STOP_SEQUENCES
        or not all(isinstance(s, str) for s in stops)
    ):
        raise InvalidRequest(
            f"stop_sequences: must be an array of at most {MAX_STOP_SEQUENCES} strings",
            param="stop_sequences",
        )


def _tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise InvalidRequest("tools: must be an array", param="tools")
    too_many_tools(len(tools))
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise InvalidRequest(f"tools.{i}: a tool needs a string name", param=f"tools.{i}")
        custom = tool.get("type") in (None, "custom")
        if custom and not isinstance(tool.get("input_schema"), dict):
            raise InvalidRequest(
                f"tools.{i}.input_schema: must be an object", param=f"tools.{i}.input_schema"
            )


def _tool_choice(choice: Any) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict) or choice.get("type") not in _TOOL_CHOICES:
        raise InvalidRequest(
            "tool_choice: must be an object of type auto, any, tool or none", param="tool_choice"
        )
    if choice["type"] == "tool" and not isinstance(choice.get("name"), str):
        raise InvalidRequest("tool_choice.name: required for type tool", param="tool_choice.name")


def _thinking(thinking: Any) -> None:
    if thinking is None:
        return
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind == "enabled":
        _int(thinking, "budget_tokens", 1024, required=True, at="thinking.")
    elif kind not in ("disabled", "adaptive"):
        raise InvalidRequest("thinking.type: must be enabled or disabled", param="thinking.type")


def _int(
    body: dict[str, Any],
    name: str,
    low: int,
    high: int | None = None,
    required: bool = False,
    at: str = "",
) -> None:
    value = body.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"{at}{name}: Field required", param=at + name)
        return
    if not is_int(value, low):
        raise InvalidRequest(f"{at}{name}: must be an integer ≥ {low}", param=at + name)
    if high is not None and value > high:
        raise InvalidRequest(f"{at}{name}: must be at most {high}", param=at + name)


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if not is_number(value, low, high):
        raise InvalidRequest(f"{name}: must be a number from {low} to {high}", param=name)
