"""Which tool the mock calls, and with what arguments: the one `tool_choice` names, else
the first one the user's last words name, else the first, with every required property
filled. Shared by every wire format the mock speaks."""

from __future__ import annotations

from typing import Any


def wants_tool(body: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Call a tool when tools are offered and the last turn is the user's (system turns after
    it aside, as agents send them): the one tool_choice names, else the first one the user's
    last words name, else the first. Its arguments fill every required property."""
    tools = body.get("tools") or []
    choice = body.get("tool_choice")
    turns = [m for m in messages if m.get("role") not in ("system", "developer")]
    if not tools or choice in ("none", {"type": "none"}) or not turns:
        return None
    if turns[-1].get("role") != "user":
        return None
    last = turns[-1].get("content")
    if isinstance(last, list) and any(p.get("type") == "tool_result" for p in last):
        return None
    wanted = None
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name") or choice.get("name")
    specs = [tool.get("function") or tool for tool in tools]
    if wanted is None:
        said = set(text_of(last).replace(",", " ").replace(".", " ").split())
        wanted = next((s.get("name") for s in specs if s.get("name") in said), None)
    for spec in specs:
        if wanted is None or spec.get("name") == wanted:
            schema = spec.get("parameters") or spec.get("input_schema") or {}
            return {"name": spec.get("name"), "arguments": _arguments(schema)}
    return None


def text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _arguments(schema: dict[str, Any]) -> dict[str, Any]:
    samples = {
        "string": "sample",
        "integer": 1,
        "number": 1.5,
        "boolean": True,
        "array": [],
        "object": {},
    }
    props = schema.get("properties") or {}
    return {
        name: samples.get(str(props.get(name, {}).get("type")), "sample")
        for name in schema.get("required") or list(props)
    }


def responses_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tools a Responses request offers — in `tools` and in `additional_tools` items (as
    Codex sends them for its newest models) — namespaces opened, each marked with its
    namespace."""
    given = list(body.get("tools") or [])
    items = body.get("input") if isinstance(body.get("input"), list) else []
    for item in items or []:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            given.extend(item.get("tools") or [])
    flat: list[dict[str, Any]] = []
    for tool in given:
        if tool.get("type") == "namespace":
            flat.extend({**t, "_namespace": tool.get("name")} for t in tool.get("tools") or [])
        elif tool.get("type") in ("function", "custom"):
            flat.append(tool)
    return flat
