"""Token estimates at admission. OpenAI models are counted with tiktoken's encodings as
litellm bundles them (`gateway.bundled`; never downloaded: when the file is not on disk, we
estimate);
other models are estimated at four characters a token, OpenAI's rule of thumb."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from typing import Any

import orjson

from gateway import bundled

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def _encoding_name(model: str) -> str | None:
    name = model.rsplit("/", 1)[-1]
    if name.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o")):
        return "o200k_base"
    if name.startswith(("gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada")):
        return "cl100k_base"
    return None


@lru_cache(maxsize=4)
def _encoding(name: str) -> Any:
    directory = bundled.tokenizers()
    if directory is None:
        return None
    cache_file = directory / hashlib.sha1(_BLOB.format(name).encode()).hexdigest()
    if not cache_file.exists():
        return None  # tiktoken would download it: estimate instead
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(directory))
    import tiktoken

    return tiktoken.get_encoding(name)


def _text_of(body: dict[str, Any]) -> list[str]:
    texts: list[str] = []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(p.get("text", "") for p in content if isinstance(p, dict))
    prompt = body.get("prompt") or body.get("input")
    if isinstance(prompt, str):
        texts.append(prompt)
    elif isinstance(prompt, list):
        texts.extend(p for p in prompt if isinstance(p, str))
    if body.get("tools"):
        texts.append(orjson.dumps(body["tools"]).decode())
    return texts


# Past this many characters a prompt is estimated, not tokenised: counting runs on the event
# loop at admission (about 10 ms for this much), and every tenant shares that loop.
EXACT_CHARS = 256 * 1024


def prompt_tokens(body: dict[str, Any], model: str) -> int:
    texts = _text_of(body)
    overhead = 3 + 4 * len(body.get("messages") or [])  # per-message framing, as OpenAI counts
    name = _encoding_name(model)
    encoding = _encoding(name) if name else None
    if encoding is None or sum(len(t) for t in texts) > EXACT_CHARS:
        return overhead + sum((len(t) + 3) // 4 for t in texts)
    return overhead + sum(len(encoding.encode(t, disallowed_special=())) for t in texts)


def expected_output(body: dict[str, Any], default: int) -> int:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return value if isinstance(value, int) and value > 0 else default
