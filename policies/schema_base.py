"""The pieces of the YAML model that every part of it shares."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Timeouts(Strict):
    """Per-attempt phases; the request's deadline cuts these shorter."""

    connect_ms: int = Field(5_000, ge=1)
    """To open a connection."""
    first_byte_ms: int = Field(120_000, ge=1)
    """Streams: to the response headers and the first event."""
    idle_ms: int = Field(60_000, ge=1)
    """Streams: between two events."""
    total_ms: int = Field(600_000, ge=1)
    """Whole (non-stream) responses."""


class PriceOverride(Strict):
    """USD per million tokens."""

    input_per_mtok: float = Field(ge=0)
    """USD per million prompt tokens."""
    output_per_mtok: float = Field(ge=0)
    """USD per million completion tokens."""
    cached_input_per_mtok: float | None = Field(None, ge=0)
    """USD per million cached prompt tokens (default: the input price)."""
    cache_write_per_mtok: float | None = Field(None, ge=0)
    """USD per million cache-write tokens (default: the input price)."""
    reasoning_per_mtok: float | None = Field(None, ge=0)
    """USD per million reasoning tokens (default: the output price)."""


class PromptCache(Strict):
    """The shape stage and provider cache hints, per route (docs: prompt caching)."""

    canonical_tools: bool = True
    """Tools sorted by name and every JSON object inside them in key order: always safe."""
    volatile: list[str] = Field(default_factory=list)
    """Regexes for per-request parts of the system prompt (dates, ids, names): each match is
    replaced by a numbered reference and its value moved to a note in the final user turn."""
    note_role: Literal["user", "system"] = "user"
    """Where the note goes: a text part at the start of the final user message, or a system message
    right before it (OpenAI-wire targets only keep that out of the prefix)."""
    order_system_parts: bool = False
    """Multi-part system content: parts without a volatile match first, the others last."""
    anthropic_breakpoints: bool = True
    """Anthropic: cache_control breakpoints after tools, system and the last turn before the final
    user message, when the prefix has at least min_tokens."""
    anthropic_ttl: Literal["5m", "1h"] = "5m"
    """The breakpoints' cache lifetime."""
    anthropic_min_tokens: int = Field(1024, ge=1)
    """No breakpoints below this prefix size."""
    openai_cache_key: bool = True
    """OpenAI: prompt_cache_key from the tenant and the stable prefix's hash."""

    @field_validator("volatile")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"volatile pattern {pattern!r} does not compile: {exc}") from None
        return patterns


Endpoint = Literal["chat", "completions", "embeddings"]


class Limits(Strict):
    """Gateway-side limits. rpm and tpm are GCRA rates (any 60 s window admits at most the
    limit plus its burst); concurrent caps requests in flight."""

    rpm: int | None = Field(None, ge=1)
    """Requests per minute (GCRA)."""
    tpm: int | None = Field(None, ge=1)
    """Tokens per minute, prompt estimate plus expected output, settled to real usage (GCRA)."""
    concurrent: int | None = Field(None, ge=1)
    """Requests in flight at once."""
    burst_share: float = Field(0.01, ge=0, le=1)
    """Requests (or tokens) allowed at once; any 60 s window admits at most limit * (1 + share)."""


class AnswerCache(Strict):
    """The response cache of one route (docs: Response cache): a repeated request answered
    from a stored answer, for free. Keyed by tenant (team, else key), route, client protocol
    and the shaped request; never shared across tenants."""

    enabled: bool = False
    """Off unless set."""
    ttl_s: float = Field(3600, gt=0, le=30 * 86_400)
    """How long an answer is served from the cache."""
    max_entry_bytes: int = Field(1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    """Answers larger than this are not stored."""
    sampled: bool = False
    """Also cache requests that sample (temperature above zero, or unset: the APIs' default
    is 1), whose answers would differ if asked again."""
