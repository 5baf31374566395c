"""Exact cost: prices as Decimal USD per token, cost as integer micro-dollars (rounded half
to even once per request). litellm's bundled price map is read as data at startup (litellm
itself is not imported); per-provider YAML overrides win; a model with no known price costs
"unknown" (None), never $0.

Token semantics follow OpenAI's usage: `prompt_tokens` counts every prompt token, cached
reads (`cached_tokens`) and Anthropic cache writes (`cache_write_tokens`) included;
`reasoning_tokens` are part of `completion_tokens`."""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from gateway.providers.base import Usage

log = logging.getLogger("spillover.pricing")

MILLION = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per token."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None  # None: cached reads cost the input price
    cache_write: Decimal | None = None  # None: cache writes cost the input price
    reasoning: Decimal | None = None  # None: reasoning costs the output price

    @classmethod
    def per_million(
        cls,
        input: str | float,
        output: str | float,
        cached_input: str | float | None = None,
        cache_write: str | float | None = None,
        reasoning: str | float | None = None,
    ) -> ModelPrice:
        def dec(v: str | float | None) -> Decimal | None:
            return None if v is None else Decimal(str(v)) / MILLION

        return cls(
            dec(input) or Decimal(0),
            dec(output) or Decimal(0),
            dec(cached_input),
            dec(cache_write),
            dec(reasoning),
        )


def cost_micro_usd(usage: Usage, price: ModelPrice) -> int:
    """The request's cost in integer micro-dollars."""
    cached = usage.cached_tokens
    written = usage.cache_write_tokens
    fresh = max(0, usage.prompt_tokens - cached - written)
    reasoning = min(usage.reasoning_tokens, usage.completion_tokens)
    visible = (
        usage.completion_tokens - reasoning
        if price.reasoning is not None
        else (usage.completion_tokens)
    )
    usd = (
        fresh * price.input
        + cached * (price.cached_input if price.cached_input is not None else price.input)
        + written * (price.cache_write if price.cache_write is not None else price.input)
        + visible * price.output
        + (reasoning * price.reasoning if price.reasoning is not None else 0)
    )
    return int((usd * MILLION).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def self_hosted_price(
    gpu_cost_per_hour: float, replicas: int, tokens_per_hour: float
) -> ModelPrice:
    """A self-hosted pool costs its GPUs whether busy or not: amortise the hourly cost over
    the tokens it actually served (prompt and output alike)."""
    per_token = Decimal(str(gpu_cost_per_hour)) * replicas / Decimal(str(max(tokens_per_hour, 1.0)))
    return ModelPrice(per_token, per_token)


def _from_litellm(entry: dict[str, Any]) -> ModelPrice | None:
    if "input_cost_per_token" not in entry or "output_cost_per_token" not in entry:
        return None

    def get(name: str) -> Decimal | None:
        value = entry.get(name)
        return Decimal(str(value)) if value is not None else None

    return ModelPrice(
        input=get("input_cost_per_token") or Decimal(0),
        output=get("output_cost_per_token") or Decimal(0),
        cached_input=get("cache_read_input_token_cost"),
        cache_write=get("cache_creation_input_token_cost"),
        reasoning=get("output_cost_per_reasoning_token"),
    )


def litellm_price_file() -> Path | None:
    """litellm's bundled map, found without importing litellm."""
    spec = importlib.util.find_spec("litellm")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / "model_prices_and_context_window_backup.json"
        if path.exists():
            return path
    return None


class PriceTable:
    def __init__(
        self,
        base: dict[str, ModelPrice],
        overrides: dict[tuple[str, str], ModelPrice],
        self_hosted: Mapping[str, Callable[[], ModelPrice]] | None = None,
    ) -> None:
        self._base = base
        self._overrides = overrides
        self._self_hosted = dict(self_hosted or {})

    @classmethod
    def load(
        cls, overrides: dict[tuple[str, str], ModelPrice], path: Path | None = None
    ) -> PriceTable:
        base: dict[str, ModelPrice] = {}
        source = path or litellm_price_file()
        if source is None:
            log.warning("litellm's price map was not found; only configured prices apply")
        else:
            data = json.loads(source.read_text(encoding="utf-8"))
            for model, entry in data.items():
                if isinstance(entry, dict) and (price := _from_litellm(entry)) is not None:
                    base[model] = price
        return cls(base, overrides)

    @classmethod
    def with_overrides(
        cls,
        table: PriceTable,
        overrides: dict[tuple[str, str], ModelPrice],
        self_hosted: Mapping[str, Callable[[], ModelPrice]] | None = None,
    ) -> PriceTable:
        """The same base map (loaded once) under another config's overrides."""
        return cls(table._base, overrides, self_hosted)

    def price(self, provider: str, provider_kind: str, model: str) -> ModelPrice | None:
        override = self._overrides.get((provider, model))
        if override is not None:
            return override
        pool = self._self_hosted.get(provider)
        if pool is not None:
            return pool()
        return (
            self._base.get(model)
            or self._base.get(f"{provider_kind}/{model}")
            or self._base.get(model.split("/", 1)[-1])
        )

    def cost(self, provider: str, provider_kind: str, model: str, usage: Usage) -> int | None:
        price = self.price(provider, provider_kind, model)
        return None if price is None else cost_micro_usd(usage, price)
