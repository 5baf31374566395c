"""Prompt caching as the providers document it, for the mock: exact byte prefixes of the
request as received, with expiry.

OpenAI: automatic for prompts of 1,024 tokens or more, in 128-token steps; an entry lives
5 minutes after its last use. Anthropic: only at `cache_control` breakpoints whose prefix
(tools → system → messages) has at least the minimum length; a breakpoint reads the longest
earlier write among the 20 blocks before it; a write lives 5 minutes (or 1 hour with
`ttl: "1h"`) after its last use; `cache_creation_input_tokens` counts what was written beyond
what was read. Tokens are four characters of the serialised request, like the mock's own.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

OPENAI_MIN_TOKENS = 1024
OPENAI_STEP_TOKENS = 128
LOOKBACK_BLOCKS = 20


@dataclass(frozen=True, slots=True)
class CacheUsage:
    prompt: int  # every prompt token, cached or not
    read: int = 0
    write: int = 0

    @property
    def uncached(self) -> int:
        return self.prompt - self.read


class PrefixCache:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._expiry: dict[bytes, float] = {}
        self._clock = clock
        self.anthropic_min_tokens = 1024

    def clear(self) -> None:
        self._expiry.clear()

    def _alive(self, key: bytes, now: float) -> bool:
        return self._expiry.get(key, 0.0) > now

    def _keep(self, key: bytes, now: float, ttl: float) -> None:
        self._expiry[key] = max(self._expiry.get(key, 0.0), now + ttl)
        if len(self._expiry) > 200_000:
            self._expiry = {k: v for k, v in self._expiry.items() if v > now}

    def openai(self, body: dict[str, Any]) -> CacheUsage:
        messages = body.get("messages", body.get("prompt"))
        tools = body.get("tools")
        data = orjson.dumps([tools, messages] if tools else messages)
        prompt = max(1, len(data) // 4)
        now = self._clock()
        cached = 0
        digest = hashlib.blake2b(digest_size=16)
        position = 0
        for tokens in range(OPENAI_MIN_TOKENS, prompt + 1, OPENAI_STEP_TOKENS):
            digest.update(data[position : tokens * 4])
            position = tokens * 4
            key = digest.copy().digest()
            if self._alive(key, now):
                cached = tokens
            self._keep(key, now, 300.0)
        return CacheUsage(prompt, cached)

    def anthropic(self, body: dict[str, Any]) -> CacheUsage:
        blocks = _anthropic_blocks(body)
        now = self._clock()
        digest = hashlib.blake2b(digest_size=16)
        size = 0
        keys: list[bytes] = []
        tokens: list[int] = []
        for data, _ in blocks:
            digest.update(data)
            size += len(data)
            keys.append(digest.copy().digest())
            tokens.append(size // 4)
        # The mock's own count (its estimate of the request text); the blocks place breakpoints.
        tools = body.get("tools")
        parts = [body.get("system"), body.get("messages")]
        prompt = max(1, len(orjson.dumps([tools, *parts] if tools else parts)) // 4)
        points = [
            (i, ttl)
            for i, (_, ttl) in enumerate(blocks)
            if ttl is not None and tokens[i] >= self.anthropic_min_tokens
        ]
        read = 0
        for i, _ in points:
            for j in range(i, max(-1, i - LOOKBACK_BLOCKS), -1):
                if self._alive(keys[j], now):
                    read = max(read, tokens[j])
                    self._keep(keys[j], now, 300.0)
                    break
        write = 0
        if points:
            last, _ = points[-1]
            write = max(0, tokens[last] - read)
            for i, ttl in points:
                self._keep(keys[i], now, ttl or 300.0)
        read = min(read, prompt)
        return CacheUsage(prompt, read, min(write, prompt - read))


def _anthropic_blocks(body: dict[str, Any]) -> list[tuple[bytes, float | None]]:
    """Every block in cache order, serialised without its marker, with the marker's TTL."""
    out: list[tuple[bytes, float | None]] = []

    def add(block: Any, prefix: bytes = b"") -> None:
        marker = block.get("cache_control") if isinstance(block, dict) else None
        if isinstance(block, dict):
            block = {k: v for k, v in block.items() if k != "cache_control"}
        ttl = None
        if isinstance(marker, dict):
            ttl = 3600.0 if marker.get("ttl") == "1h" else 300.0
        out.append((prefix + orjson.dumps(block), ttl))

    for tool in body.get("tools") or []:
        add(tool)
    system = body.get("system")
    for block in system if isinstance(system, list) else [system] if system else []:
        add(block)
    for message in body.get("messages") or []:
        content = message.get("content")
        parts = content if isinstance(content, list) else [content]
        for n, part in enumerate(parts):
            add(part, str(message.get("role", "")).encode() if n == 0 else b"")
    return out


def patch_openai(value: dict[str, Any], cache: CacheUsage) -> None:
    """Set the cached tokens in a whole answer or a usage chunk."""
    usage = value.get("usage")
    if not isinstance(usage, dict):
        return
    completion = int(usage.get("completion_tokens") or 0)
    usage["prompt_tokens"] = cache.prompt
    usage["total_tokens"] = cache.prompt + completion
    details = usage.setdefault("prompt_tokens_details", {})
    details["cached_tokens"] = cache.read


def patch_anthropic(usage: dict[str, Any], cache: CacheUsage) -> None:
    usage["input_tokens"] = max(0, cache.prompt - cache.read - cache.write)
    usage["cache_read_input_tokens"] = cache.read
    usage["cache_creation_input_tokens"] = cache.write
