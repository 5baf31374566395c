"""Exact cost: prices as Decimal USD per token, cost as integer micro-dollars (rounded half
to even once per request). litellm's bundled price map is read as data at startup (litellm
itself is not imported); per-provider YAML overrides win; a model with no known price costs
"unknown" (None), never $0.

Token semantics follow OpenAI's usage: `prompt_tokens` counts every prompt token, cached
reads (`cached_tokens`) and Anthropic cache writes (`cache_write_tokens`) included;
`reasoning_tokens` are part of `completion_tokens`."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from gateway import bundled
from gateway.providers.base import Usage
from policies.schema import GatewayConfig

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

    @property
    def cache_read_rate(self) -> Decimal:
        return self.cached_input if self.cached_input is not None else self.input

    @property
    def cache_write_rate(self) -> Decimal:
        return self.cache_write if self.cache_write is not None else self.input

    def cache_saving(self, cached_tokens: int) -> Decimal:
        """What `cached_tokens` read from a prompt cache saved against the full input price."""
        return cached_tokens * (self.input - self.cache_read_rate)

    def cache_write_premium(self, written_tokens: int) -> Decimal:
        """What writing `written_tokens` into a prompt cache cost above the input price."""
        return written_tokens * (self.cache_write_rate - self.input)

    def per_request(self, prompt_tokens: int, output_tokens: int) -> Decimal:
        """A request of this size at this price, before caching (for ordering and limits)."""
        return prompt_tokens * self.input + output_tokens * self.output


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
        + cached * price.cache_read_rate
        + written * price.cache_write_rate
        + visible * price.output
        + (reasoning * price.reasoning if price.reasoning is not None else 0)
    )
    return int((usd * MILLION).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def self_hosted_price(
    gpu_cost_per_hour: float, tokens_per_replica_hour: int | None
) -> ModelPrice | None:
    """A request's share of a replica's GPU time at capacity: the hourly cost over the tokens
    one replica sustains in an hour, prompt and output alike. A stable number: amortising over
    the tokens actually served made a quiet pool's first request cost thousands of dollars.
    Idle capacity is the pool's cost, shown apart, never a request's. Free GPUs cost 0; a
    cost with no capacity to divide it by is unknown (None), never a guess."""
    if gpu_cost_per_hour == 0:
        return ModelPrice(Decimal(0), Decimal(0))
    if tokens_per_replica_hour is None:
        return None
    per_token = Decimal(str(gpu_cost_per_hour)) / Decimal(tokens_per_replica_hour)
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


class PriceTable:
    """The one price of every (provider, model): the provider's YAML `prices`, else a route
    target's `price`, else a self-hosted pool's amortised price, else litellm's map (by the
    model's name, or `<provider kind>/<name>`). Accounting, budgets, reports and
    `lowest_cost` routing all read it."""

    def __init__(
        self,
        base: dict[str, ModelPrice],
        overrides: dict[tuple[str, str], ModelPrice],
        self_hosted: Mapping[str, Callable[[], ModelPrice | None]] | None = None,
        kinds: Mapping[str, str] | None = None,
        reasoning: frozenset[str] = frozenset(),
    ) -> None:
        self._base = base
        self._reasoning = reasoning  # models litellm's map says take a reasoning effort
        self._overrides = overrides
        self._self_hosted = dict(self_hosted or {})
        self._kinds = dict(kinds or {})

    @classmethod
    def load(
        cls,
        overrides: dict[tuple[str, str], ModelPrice],
        path: Path | None = None,
        kinds: Mapping[str, str] | None = None,
    ) -> PriceTable:
        base: dict[str, ModelPrice] = {}
        reasoning: set[str] = set()
        source = path or bundled.price_map()
        if source is None:
            log.warning("litellm's price map was not found; only configured prices apply")
        else:
            data = json.loads(source.read_text(encoding="utf-8"))
            for model, entry in data.items():
                if isinstance(entry, dict) and (price := _from_litellm(entry)) is not None:
                    base[model] = price
                if isinstance(entry, dict) and entry.get("supports_reasoning") is True:
                    reasoning.add(model)
        return cls(base, overrides, kinds=kinds, reasoning=frozenset(reasoning))

    def for_config(
        self,
        config: GatewayConfig,
        self_hosted: Mapping[str, Callable[[], ModelPrice | None]] | None = None,
    ) -> PriceTable:
        """The same base map (loaded once) under a config's prices and provider kinds."""
        overrides = {
            (target.provider, target.model): ModelPrice.per_million(
                target.price.input_per_mtok, target.price.output_per_mtok
            )
            for route in config.routes.values()
            for target in route.targets
            if target.price is not None
        }
        overrides.update(
            {
                (name, model): ModelPrice.per_million(
                    o.input_per_mtok,
                    o.output_per_mtok,
                    o.cached_input_per_mtok,
                    o.cache_write_per_mtok,
                    o.reasoning_per_mtok,
                )
                for name, p in config.providers.items()
                for model, o in p.prices.items()
            }
        )
        kinds = {name: p.kind for name, p in config.providers.items()}
        return PriceTable(self._base, overrides, self_hosted, kinds, self._reasoning)

    def reasons(self, provider: str, model: str) -> bool:
        """Whether `model` at `provider` takes a reasoning effort (litellm's map), so that a
        client's thinking settings can become one."""
        known = self._reasoning
        return (
            model in known
            or f"{self.kind(provider)}/{model}" in known
            or model.split("/", 1)[-1] in known
        )

    def kind(self, provider: str) -> str:
        return self._kinds.get(provider, "")

    def price(self, provider: str, model: str) -> ModelPrice | None:
        override = self._overrides.get((provider, model))
        if override is not None:
            return override
        pool = self._self_hosted.get(provider)
        if pool is not None:
            return pool()
        return (
            self._base.get(model)
            or self._base.get(f"{self.kind(provider)}/{model}")
            or self._base.get(model.split("/", 1)[-1])
        )

    def cost(self, provider: str, model: str, usage: Usage) -> int | None:
        price = self.price(provider, model)
        return None if price is None else cost_micro_usd(usage, price)
