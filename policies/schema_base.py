"""The pieces of the YAML model that every part of it shares."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


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
