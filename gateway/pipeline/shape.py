"""The shape stage: make a chat request's prefix byte-stable so provider prompt caches hit.

Always (unless the route turns it off): tools sorted by name, every JSON object inside them
in key order — the same tools then serialise to the same bytes, whatever order the client
built them in. Opt-in per route: `volatile` patterns in the system prompt (a timestamp, a
request id) are replaced by numbered references (`[ref 1]`) and their values moved to a
note in the final user turn ("Values the system prompt refers to: [ref 1] = …"); or the
parts of a multi-part system prompt are ordered static first. Conversation turns are never
reordered; requests that carry the client's own cache markers are left alone.

Pure: the stage returns a new body (the input is not mutated) and what it changed.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.providers.base import CacheHint
from gateway.providers.cache_hints import openai_cache_key
from policies.schema_base import PromptCache

_SYSTEM_ROLES = ("system", "developer")


@dataclass(frozen=True, slots=True)
class Shaped:
    body: dict[str, Any]
    changes: tuple[str, ...] = ()
    # sha256 of the stable prefix (tools and the leading system messages), hex; None when
    # the request was left alone.
    prefix_hash: str | None = None
    prefix_chars: int = 0
    client_markers: bool = False
    moved: list[str] = field(default_factory=list)


def canonical(value: Any) -> Any:
    """The same value with every object's keys in sorted order (lists keep their order)."""
    if isinstance(value, dict):
        return {k: canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    return value


def _tool_name(tool: Any) -> str:
    if not isinstance(tool, dict):
        return ""
    function = tool.get("function")
    spec = function if isinstance(function, dict) else tool
    return str(spec.get("name", ""))


def has_client_markers(body: dict[str, Any]) -> bool:
    """Anthropic-style `cache_control` anywhere the client could have put one."""
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and "cache_control" in tool:
            return True
    for message in body.get("messages") or []:
        if not isinstance(message, dict):
            continue
        if "cache_control" in message:
            return True
        content = message.get("content")
        if isinstance(content, list) and any(
            isinstance(p, dict) and "cache_control" in p for p in content
        ):
            return True
    return False


@functools.lru_cache(maxsize=64)
def _compiled(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{p})" for p in patterns))


def _leading_system(messages: Sequence[Any]) -> int:
    """How many messages at the start are system (or developer) messages."""
    count = 0
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in _SYSTEM_ROLES:
            break
        count += 1
    return count


def _replace(text: str, pattern: re.Pattern[str], moved: list[str]) -> str:
    def reference(match: re.Match[str]) -> str:
        moved.append(match.group(0))
        return f"[ref {len(moved)}]"

    return pattern.sub(reference, text)


def _shape_system(
    message: dict[str, Any], pattern: re.Pattern[str], order_parts: bool, moved: list[str]
) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": _replace(content, pattern, moved)}
    if not isinstance(content, list):
        return message
    if order_parts:

        def dynamic(part: Any) -> bool:
            return isinstance(part, dict) and bool(pattern.search(str(part.get("text", ""))))

        return {**message, "content": sorted(content, key=dynamic)}  # stable: static first
    parts = [
        {**p, "text": _replace(p["text"], pattern, moved)}
        if isinstance(p, dict) and isinstance(p.get("text"), str)
        else p
        for p in content
    ]
    return {**message, "content": parts}


def _with_note(messages: list[Any], moved: list[str], role: str) -> list[Any]:
    note = "Values the system prompt refers to: " + "; ".join(
        f"[ref {i}] = {value}" for i, value in enumerate(moved, 1)
    )
    last_user = max(
        (i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "user"),
        default=None,
    )
    if last_user is None or role == "system":
        at = len(messages) if last_user is None else last_user
        return [*messages[:at], {"role": "system", "content": note}, *messages[at:]]
    message = messages[last_user]
    content = message.get("content")
    parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
    updated = {**message, "content": [{"type": "text", "text": note}, *parts]}
    return [*messages[:last_user], updated, *messages[last_user + 1 :]]


def shape(body: dict[str, Any], policy: PromptCache) -> Shaped:
    """Shape a chat request (see the module docstring)."""
    if has_client_markers(body):
        return Shaped(body, client_markers=True)
    out = dict(body)
    changes: list[str] = []
    tools = body.get("tools")
    if policy.canonical_tools and isinstance(tools, list) and tools:
        ordered = sorted((canonical(t) for t in tools), key=_tool_name)
        if orjson.dumps(ordered) != orjson.dumps(tools):
            changes.append("tools")
        out["tools"] = ordered
    messages = body.get("messages")
    moved: list[str] = []
    pattern = _compiled(tuple(policy.volatile))
    leading = _leading_system(messages) if isinstance(messages, list) else 0
    if pattern is not None and isinstance(messages, list) and leading:
        system = [
            _shape_system(m, pattern, policy.order_system_parts, moved) for m in messages[:leading]
        ]
        rest = list(messages[leading:])
        if system != messages[:leading]:
            changes.append("system_ordered" if policy.order_system_parts and not moved else "")
        if moved:
            changes.append("volatile")
            rest = _with_note(rest, moved, policy.note_role)
        out["messages"] = system + rest
    prefix = orjson.dumps([out.get("tools"), (out.get("messages") or [])[:leading]])
    return Shaped(
        out,
        tuple(c for c in changes if c),
        hashlib.sha256(prefix).hexdigest(),
        len(prefix),
        moved=moved,
    )


def cache_hint(shaped: Shaped, policy: PromptCache, tenant: str) -> CacheHint | None:
    """The provider hints for a shaped request; none when the client set its own markers."""
    if shaped.client_markers or shaped.prefix_hash is None:
        return None
    return CacheHint(
        anthropic_ttl=policy.anthropic_ttl if policy.anthropic_breakpoints else None,
        anthropic_min_tokens=policy.anthropic_min_tokens,
        openai_key=openai_cache_key(tenant, shaped.prefix_hash)
        if policy.openai_cache_key
        else None,
    )
