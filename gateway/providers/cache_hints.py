"""Provider prompt-cache hints, pure: Anthropic `cache_control` breakpoints placed on a
translated Messages request, and OpenAI's `prompt_cache_key`.

Anthropic caches the prefix up to each breakpoint (order: tools → system → messages; at most
four breakpoints; below the model's minimum length a breakpoint is ignored and a write would
only cost). We mark the last tool, the last system block, and the last block of the turn
before the final user message — the conversation so far, which the next turn extends (the
provider looks back up to 20 blocks for an earlier write, so each turn reads the previous
one's prefix)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from gateway.providers.base import CacheHint

MAX_BREAKPOINTS = 4


def _marker(ttl: str) -> dict[str, str]:
    return {"type": "ephemeral", "ttl": "1h"} if ttl == "1h" else {"type": "ephemeral"}


def _blocks(content: Any) -> list[Any]:
    if isinstance(content, list):
        return content
    return [{"type": "text", "text": content}] if isinstance(content, str) else []


def count_markers(body: dict[str, Any]) -> int:
    tools = sum(1 for t in body.get("tools") or [] if "cache_control" in t)
    system = sum(1 for b in _blocks(body.get("system")) if "cache_control" in b)
    messages = sum(
        1
        for m in body.get("messages") or []
        for b in _blocks(m.get("content"))
        if isinstance(b, dict) and "cache_control" in b
    )
    return tools + system + messages


def _tokens(*parts: Any) -> int:
    return len(orjson.dumps(parts)) // 4


def anthropic_breakpoints(body: dict[str, Any], hint: CacheHint) -> dict[str, Any]:
    """The request with breakpoints where the prefix reaches `hint.min_tokens`, never more
    than four in all counting any already there."""
    budget = MAX_BREAKPOINTS - count_markers(body)
    if budget <= 0:
        return body
    out = dict(body)
    marker = _marker(hint.anthropic_ttl or "5m")
    tools = list(body.get("tools") or [])
    system = _blocks(body.get("system"))
    messages = list(body.get("messages") or [])
    stable = len(messages) - 1  # every turn before the final user message
    places: list[tuple[str, int]] = []
    if tools and _tokens(tools) >= hint.anthropic_min_tokens:
        places.append(("tools", len(tools) - 1))
    if system and _tokens(tools, system) >= hint.anthropic_min_tokens:
        places.append(("system", len(system) - 1))
    if stable >= 1 and _tokens(tools, system, messages[:stable]) >= hint.anthropic_min_tokens:
        places.append(("messages", stable - 1))
    for where, index in places[-budget:]:  # the longest prefixes matter most
        if where == "tools":
            tools[index] = {**tools[index], "cache_control": marker}
            out["tools"] = tools
        elif where == "system":
            system = list(system)
            system[index] = {**system[index], "cache_control": marker}
            out["system"] = system
        else:
            message = messages[index]
            blocks = list(_blocks(message.get("content")))
            if not blocks:
                continue
            blocks[-1] = {**blocks[-1], "cache_control": marker}
            messages[index] = {**message, "content": blocks}
            out["messages"] = messages
    return out


def openai_cache_key(tenant: str, prefix_hash: str) -> str:
    """Same tenant and prefix → same key (OpenAI routes requests with one key together).
    The tenant as a digest of its whole typed name: no two tenants share a key, and no
    team or key name goes upstream."""
    owner = hashlib.blake2s(tenant.encode(), digest_size=8).hexdigest()
    return f"{owner}-{prefix_hash[:16]}"
