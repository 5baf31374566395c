"""The pieces of the YAML model that every part of it shares."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(Strict):
    """Per-attempt phases; the route's deadline (a later issue) cuts these shorter."""

    connect_ms: int = Field(5_000, ge=1)
    first_byte_ms: int = Field(120_000, ge=1)
    idle_ms: int = Field(60_000, ge=1)
    total_ms: int = Field(600_000, ge=1)


class PriceOverride(Strict):
    """USD per million tokens."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)
    cache_write_per_mtok: float | None = Field(None, ge=0)
    reasoning_per_mtok: float | None = Field(None, ge=0)


class PromptCache(Strict):
    """The shape stage and provider cache hints, per route (README, "Prompt caching")."""

    # Tools sorted by name and every JSON object inside them in key order: always safe.
    canonical_tools: bool = True
    # Regexes for per-request parts of the system prompt (dates, ids, names): each match is
    # replaced by a numbered reference and its value moved to a note in the final user turn.
    volatile: list[str] = Field(default_factory=list)
    # Where the note goes: a text part at the start of the final user message, or a system
    # message right before it (OpenAI-wire targets only keep that out of the prefix).
    note_role: Literal["user", "system"] = "user"
    # Multi-part system content: parts without a volatile match first, the others last.
    order_system_parts: bool = False
    # Anthropic: cache_control breakpoints after tools, system and the last turn before
    # the final user message, when the prefix has at least min_tokens.
    anthropic_breakpoints: bool = True
    anthropic_ttl: Literal["5m", "1h"] = "5m"
    anthropic_min_tokens: int = Field(1024, ge=1)
    # OpenAI: prompt_cache_key from the tenant and the stable prefix's hash.
    openai_cache_key: bool = True

    @field_validator("volatile")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"volatile pattern {pattern!r} does not compile: {exc}") from None
        return patterns
