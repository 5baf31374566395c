"""Fields of a native request that reach objects or servers in the upstream account every
tenant shares — a stored conversation or prompt, a vector store, a remote MCP server the
client names (with headers of its choosing), a code container. None crosses unless the
route lists it in `upstream_objects`: one tenant could otherwise read or drive another's
objects, or make the gateway's account call any server."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.errors import InvalidRequest

# The client's field (or tool type) → the name a route's `upstream_objects` allows it by.
_RESPONSES_FIELDS = {"conversation": "conversation", "prompt": "prompt"}
_RESPONSES_TOOLS = {"file_search": "file_search", "mcp": "mcp"}
_MESSAGES_FIELDS = {"mcp_servers": "mcp_servers", "container": "container"}


def check_responses(body: dict[str, Any], route_name: str, allowed: Iterable[str]) -> None:
    _check(_used(body, _RESPONSES_FIELDS, _RESPONSES_TOOLS), route_name, set(allowed))


def check_messages(body: dict[str, Any], route_name: str, allowed: Iterable[str]) -> None:
    _check(_used(body, _MESSAGES_FIELDS, {}), route_name, set(allowed))


def _used(
    body: dict[str, Any], fields: dict[str, str], tools: dict[str, str]
) -> Iterable[tuple[str, str]]:
    for name, kind in fields.items():
        if body.get(name) is not None:
            yield name, kind
    for i, tool in enumerate(body.get("tools") or []):
        runs = tools.get(str(tool.get("type"))) if isinstance(tool, dict) else None
        if runs is not None:
            yield f"tools[{i}]", runs


def _check(used: Iterable[tuple[str, str]], route_name: str, allowed: set[str]) -> None:
    for where, kind in used:
        if kind not in allowed:
            raise InvalidRequest(
                f"{where} ({kind}) reaches objects in the gateway's shared upstream account; "
                f"route '{route_name}' does not allow it (routes.<name>.upstream_objects)",
                param=where,
            )
