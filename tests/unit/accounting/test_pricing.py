"""Cost arithmetic against hand-computed cases, in integer micro-dollars."""

from __future__ import annotations

from decimal import Decimal

from gateway.accounting.pricing import ModelPrice, PriceTable, cost_micro_usd, self_hosted_price
from gateway.providers.base import Usage

TABLE = PriceTable.load(
    {("tuned", "my-reasoner"): ModelPrice.per_million(1, 2, reasoning=3)},
    kinds={"primary": "openai", "claude": "anthropic", "tuned": "openai", "x": "openai"},
)


def test_gpt_4o_with_cached_tokens() -> None:
    # $2.50/M input, $1.25/M cached input, $10/M output (litellm's map):
    # 976 x 2.50 + 1,024 x 1.25 + 500 x 10 = 2,440 + 1,280 + 5,000 = 8,720 µ$
    usage = Usage(prompt_tokens=2_000, cached_tokens=1_024, completion_tokens=500)
    assert TABLE.cost("primary", "gpt-4o", usage) == 8_720


def test_claude_with_cache_reads_and_writes() -> None:
    # Anthropic: input_tokens 100, cache_read 5,000, cache_creation 2,000, output 300 at
    # $3 / $0.30 / $3.75 / $15 per M: 300 + 1,500 + 7,500 + 4,500 = 13,800 µ$
    usage = Usage(
        prompt_tokens=7_100, cached_tokens=5_000, cache_write_tokens=2_000, completion_tokens=300
    )
    assert TABLE.cost("claude", "claude-sonnet-4-5", usage) == 13_800


def test_reasoning_tokens_are_output_tokens_unless_priced_apart() -> None:
    # o3-mini: $1.10/M in, $4.40/M out; 1,500 of the 2,000 completion tokens are reasoning,
    # billed as output and not twice: 1,000 x 1.10 + 2,000 x 4.40 = 9,900 µ$
    usage = Usage(prompt_tokens=1_000, completion_tokens=2_000, reasoning_tokens=1_500)
    assert TABLE.cost("primary", "o3-mini", usage) == 9_900
    # A model whose reasoning has its own price (YAML override): 10 x 1 + 40 x 2 + 60 x 3
    usage = Usage(prompt_tokens=10, completion_tokens=100, reasoning_tokens=60)
    assert TABLE.cost("tuned", "my-reasoner", usage) == 270


def test_a_self_hosted_request_costs_its_share_of_gpu_time_at_capacity() -> None:
    # A replica at $3.50/h sustains 3,500,000 tokens/h → $1 per M tokens → 500 tokens = 500 µ$,
    # however busy or quiet the pool is.
    price = self_hosted_price(3.5, 3_500_000)
    assert price is not None and price.input == price.output == Decimal("0.000001")
    assert cost_micro_usd(Usage(prompt_tokens=300, completion_tokens=200), price) == 500
    assert self_hosted_price(0.0, None) == ModelPrice(Decimal(0), Decimal(0))  # free GPUs
    assert self_hosted_price(3.5, None) is None  # a cost and no capacity: unknown, not a guess


def test_rounding_is_half_even_once_per_request_and_unknown_is_not_zero() -> None:
    price = ModelPrice.per_million("0.15", "0.60")
    assert cost_micro_usd(Usage(prompt_tokens=10), price) == 2  # 1.5 µ$ → 2
    assert cost_micro_usd(Usage(prompt_tokens=5), price) == 1  # 0.75 µ$ → 1
    assert cost_micro_usd(Usage(prompt_tokens=30), price) == 4  # 4.5 µ$ → 4 (even)
    assert TABLE.cost("x", "no-such-model-anywhere", Usage(prompt_tokens=9)) is None


def test_one_price_per_provider_and_model_for_accounting_and_routing() -> None:
    from policies.loader import parse_config

    config = parse_config(
        """\
providers:
  cheap: {kind: openai, prices: {m: {input_per_mtok: 0.5, output_per_mtok: 1.5}}}
  dear: {kind: openai}
routes:
  r:
    strategy: lowest_cost
    targets:
      - {provider: dear, model: m, price: {input_per_mtok: 5, output_per_mtok: 15}}
      - {provider: cheap, model: m, price: {input_per_mtok: 50, output_per_mtok: 150}}
keys: [{name: k, key: sk-x}]
""",
        "prices.yaml",
        {},
    )
    table = TABLE.for_config(config)
    # The provider's own `prices` win over a target's `price`, which fills in where the
    # provider has none; the kind comes from the config.
    assert table.price("cheap", "m") == ModelPrice.per_million(0.5, 1.5)
    assert table.price("dear", "m") == ModelPrice.per_million(5, 15)
    assert table.kind("cheap") == "openai"
    # Savings and premiums are computed once, on the price.
    cached = ModelPrice.per_million(2.5, 10, cached_input=1.25, cache_write=3.125)
    assert cached.cache_saving(1_000_000) == Decimal("1.25")
    assert cached.cache_write_premium(1_000_000) == Decimal("0.625")
    assert ModelPrice.per_million(2.5, 10).cache_saving(1_000) == 0
