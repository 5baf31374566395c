"""Fields of a native request that reach objects or servers in the upstream account every
tenant shares — a stored conversation or prompt, a vector store, a remote MCP server the
client names (with headers of its choosing), a code container. None crosses unless the
route lists it in `upstream_objects`: one tenant could otherwise read or drive another's
objects, or make the gateway's account call any server."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.errors import InvalidRequest

# A route's `upstream_objects` allows each by its own name: the field's, or the tool type's.
_RESPONSES_FIELDS = ("conversation", "prompt")
_RESPONSES_TOOLS = frozenset({"file_search", "mcp"})
_MESSAGES_FIELDS = ("mcp_servers", "container")


def check_responses(body: dict[str, Any], route_name: str, allowed: Iterable[str]) -> None:
    _check(_used(body, _RESPONSES_FIELDS, _RESPONSES_TOOLS), route_name, set(allowed))


def check_messages(body: dict[str, Any], route_name: str, allowed: Iterable[str]) -> None:
    _check(_used(body, _MESSAGES_FIELDS, frozenset()), route_name, set(allowed))


def _used(
    body: dict[str, Any], fields: tuple[str, ...], tools: frozenset[str]
) -> Iterable[tuple[str, str]]:
    """(where in the body, the name that allows it) for each such field and tool used."""
    for name in fields:
        if body.get(name) is not None:
            yield name, name
    for i, tool in enumerate(body.get("tools") or []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind in tools:
            yield f"tools[{i}]", kind


def _check(used: Iterable[tuple[str, str]], route_name: str, allowed: set[str]) -> None:
    for where, kind in used:
        if kind not in allowed:
            raise InvalidRequest(
                f"{where} ({kind}) reaches objects in the gateway's shared upstream account; "
                f"route '{route_name}' does not allow it (routes.<name>.upstream_objects)",
                param=where,
            )
