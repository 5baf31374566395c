"""A resumed stream, accounted: the client is told the whole answer's usage, the ledger row
bills each upstream what it served at its own price and names both targets."""

from __future__ import annotations

import orjson

from gateway.accounting.pricing import ModelPrice, PriceTable
from gateway.accounting.row import LedgerRow
from gateway.keys import Principal
from gateway.metrics import GatewayMetrics
from gateway.pipeline.account import Accountant
from gateway.pipeline.context import Asked, Outcome, RequestContext
from gateway.pipeline.relay import _ToldUsage
from gateway.providers.base import Usage
from policies.route import Target

PRIMARY = Target(provider="primary", model="gpt-4o")
FALLBACK = Target(provider="claude", model="claude-sonnet-4-5")


class Rows:
    def __init__(self) -> None:
        self.rows: list[LedgerRow] = []

    def add(self, record: LedgerRow) -> None:
        self.rows.append(record)

    def accepting(self) -> bool:
        return True


def test_each_upstream_is_billed_its_share_at_its_own_price() -> None:
    prices = PriceTable(
        {},
        {
            ("primary", "gpt-4o"): ModelPrice.per_million(2, 10),
            ("claude", "claude-sonnet-4-5"): ModelPrice.per_million(3, 15),
        },
    )
    rows = Rows()
    accountant = Accountant(GatewayMetrics(), prices, rows)
    ctx = RequestContext(request_id="r1", endpoint="chat", asked=Asked(body={}, stream=True))
    ctx.principal = Principal("k", "t", None, False)
    first, second = Usage(100, 3), Usage(110, 13)  # the continuation's prompt holds the partial
    ctx.outcome = Outcome(
        served_by=PRIMARY,
        resumed_by=FALLBACK,
        resumed=True,
        status=200,
        segments=[(PRIMARY, first), (FALLBACK, second)],
        usage=Usage(210, 16),
    )
    cost = accountant.record(ctx).cost_micro_usd
    # 100 in, 3 out at the primary's price; 110 in, 13 out at the fallback's ($ per million).
    assert cost == 100 * 2 + 3 * 10 + 110 * 3 + 13 * 15
    [row] = rows.rows
    assert (row.provider, row.resumed_by, row.resumed, row.fell_back) == (
        "primary", "claude/claude-sonnet-4-5", True, True)  # fmt: skip
    assert (row.prompt_tokens, row.completion_tokens) == (210, 16)  # what upstreams billed


def test_the_client_is_told_the_whole_answers_usage_after_a_resume() -> None:
    told = _ToldUsage()
    untouched = b'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2}}\n\n'
    assert told.whole(untouched) == untouched  # before a resume, nothing changes
    told.before(Usage(prompt_tokens=100, completion_tokens=3, cached_tokens=40))
    final = (
        b'data: {"choices":[],"usage":{"prompt_tokens":110,"completion_tokens":13,'
        b'"total_tokens":123,"cache_creation_input_tokens":90}}\n\n'
    )
    usage = orjson.loads(told.whole(final)[6:])["usage"]
    assert usage == {
        "prompt_tokens": 100,
        "completion_tokens": 16,
        "total_tokens": 116,
        "prompt_tokens_details": {"cached_tokens": 40},
        "cache_creation_input_tokens": 0,
    }
