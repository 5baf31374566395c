"""Block hashes of a request's prompt, and the table of which replica last saw each block.

vLLM caches KV per block of `block_size` tokens, keyed by the hash of the block and of every
block before it. The gateway has no model tokenizer, so it cuts the prompt's text into blocks
of `block_tokens * 4` characters (OpenAI's rule of thumb for English): the boundaries do not
line up with the replica's, but two prompts that share a long prefix share the same leading
chain of hashes, which is all affinity needs.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CHARS_PER_TOKEN = 4


def prompt_text(body: Mapping[str, Any]) -> str:
    """The prompt as the replica will see it, in order: tools, then messages (or `prompt`)."""
    parts: list[str] = []
    tools = body.get("tools")
    if isinstance(tools, list):
        parts.extend(repr(tool) for tool in tools)
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            parts.append(str(message.get("role", "")))
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        parts.append(prompt)
    elif isinstance(prompt, list):
        parts.extend(str(p) for p in prompt)
    return "\x1e".join(parts)


def chain_hashes(blocks: Iterable[bytes]) -> list[int]:
    """Hash i covers blocks 0..i (each block's hash takes the previous one in), as vLLM's
    prefix cache keys its KV blocks."""
    out: list[int] = []
    previous = b""
    for block in blocks:
        previous = hashlib.blake2b(previous + block, digest_size=8).digest()
        out.append(int.from_bytes(previous, "big"))
    return out


def block_hashes(text: str, block_tokens: int, max_blocks: int) -> tuple[int, ...]:
    """Chained hashes of the text's full blocks."""
    size = block_tokens * CHARS_PER_TOKEN
    data = text.encode("utf-8", "surrogatepass")
    count = min(len(data) // size, max_blocks)
    return tuple(chain_hashes(data[i * size : (i + 1) * size] for i in range(count)))


class PrefixTable:
    """Which replica was last sent each block hash; bounded, least recently used dropped."""

    def __init__(self, max_entries: int = 200_000) -> None:
        self._owner: OrderedDict[int, str] = OrderedDict()
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._owner)

    def deepest(self, hashes: Sequence[int], allowed: Iterable[str]) -> tuple[str, int] | None:
        """The replica holding the longest leading run of `hashes` among `allowed`, and how
        many blocks it holds."""
        names = set(allowed)
        # The chain is cumulative, so the deepest known hash names the longest shared prefix.
        for depth in range(len(hashes), 0, -1):
            owner = self._owner.get(hashes[depth - 1])
            if owner is not None and owner in names:
                return owner, depth
        return None

    def depths(self, hashes: Sequence[int]) -> dict[str, int]:
        """For every replica holding part of this chain, the longest leading run it holds."""
        out: dict[str, int] = {}
        for depth in range(len(hashes), 0, -1):
            owner = self._owner.get(hashes[depth - 1])
            if owner is not None and owner not in out:
                out[owner] = depth
        return out

    def record(self, hashes: Sequence[int], replica: str) -> None:
        for h in hashes:
            self._owner[h] = replica
            self._owner.move_to_end(h)
        while len(self._owner) > self._max:
            self._owner.popitem(last=False)

    def forget(self, replica: str) -> None:
        """A replica that restarted has an empty cache."""
        for h in [h for h, owner in self._owner.items() if owner == replica]:
            del self._owner[h]
