"""Budgets per key and per team, per calendar day and month, with reservations: before a
request is sent its largest possible cost (the prompt at the input price plus max_tokens at
the output price, on the dearest target of the route) is reserved; afterwards the
reservation becomes the real cost, or is released when nothing was billed. A hard budget
admits a request only while spent + reserved is under the limit, so concurrent requests —
on one replica or many — overspend by at most one reservation. Money is integer
micro-dollars; in Redis one Lua script reserves across every period and scope at once."""

from __future__ import annotations

import logging
import time
from zoneinfo import ZoneInfo

from gateway.accounting.pricing import MILLION, PriceTable
from gateway.errors import BudgetExceeded
from gateway.metrics import GatewayMetrics
from gateway.pipeline.context import RequestContext, Reservation
from gateway.pipeline.tokens import expected_output
from gateway.state.contracts import SpendCounters
from gateway.state.names import bucket_name, periods
from gateway.state.spend import Bucket
from policies.route import Route
from policies.schema import Budget, GatewayConfig

log = logging.getLogger("spillover.budgets")


class Budgets:
    def __init__(self, spend: SpendCounters, metrics: GatewayMetrics) -> None:
        self.spend = spend
        self._metrics = metrics
        self._keys: dict[str, Budget] = {}
        self._teams: dict[str, Budget] = {}
        self._from_file: tuple[dict[str, Budget], dict[str, Budget]] = ({}, {})
        self._stored: tuple[dict[str, Budget], dict[str, Budget]] = ({}, {})
        self._tz = ZoneInfo("UTC")
        self._prices: PriceTable | None = None
        self._outstanding = 0  # micro-dollars reserved here and not yet settled

    def configure(self, config: GatewayConfig, prices: PriceTable) -> None:
        self._from_file = (
            {k.name: k.budget for k in config.keys},
            {name: t.budget for name, t in config.teams.items()},
        )
        self._merge()
        self._tz = ZoneInfo(config.timezone)
        self._prices = prices

    def use_stored(self, keys: dict[str, Budget], teams: dict[str, Budget]) -> None:
        """The budgets of keys and teams kept as data (`gateway.keyring`)."""
        self._stored = (keys, teams)
        self._merge()

    def _merge(self) -> None:
        # Only owners with an amount set: a request of anyone else costs one dict lookup.
        keys = {**self._stored[0], **self._from_file[0]}
        teams = {**self._stored[1], **self._from_file[1]}
        self._keys = {name: b for name, b in keys.items() if _limited(b)}
        self._teams = {name: b for name, b in teams.items() if _limited(b)}

    def _buckets(self, ctx: RequestContext, now: float) -> list[Bucket]:
        principal = ctx.principal
        assert principal is not None
        owners = [("key", principal.key_name, self._keys.get(principal.key_name))]
        if principal.team:
            owners.append(("team", principal.team, self._teams.get(principal.team)))
        if all(budget is None for _, _, budget in owners):
            return []
        current = periods(now, self._tz)
        out = []
        for scope, name, budget in owners:
            if budget is None:
                continue
            for period, usd, word in (
                ("day", budget.daily_usd, "daily"),
                ("month", budget.monthly_usd, "monthly"),
            ):
                if usd is None:
                    continue
                period_id, left = current[period]
                out.append(
                    Bucket(
                        bucket_name(scope, name, period, period_id),
                        int(usd * 1_000_000),
                        budget.mode == "hard",
                        left,
                        f"{scope} {name} {word} budget (${usd:,.2f})",
                    )
                )
        return out

    def _max_cost(self, ctx: RequestContext, route: Route) -> int:
        """The most this request can cost on any target of its route."""
        assert self._prices is not None
        worst = 0
        tokens_in = ctx.prompt_tokens(route.targets[0].model)
        tokens_out = expected_output(ctx.body, route.typical_output_tokens)
        for target in route.targets:
            price = self._prices.price(target.provider, target.model)
            if price is not None:
                usd = price.per_request(tokens_in, tokens_out)
                worst = max(worst, int(usd * MILLION) + 1)
        return worst

    async def reserve(self, ctx: RequestContext, route: Route) -> Reservation | None:
        now = time.time()
        buckets = self._buckets(ctx, now)
        if not buckets:
            return None
        amount = self._max_cost(ctx, route)
        full = await self.spend.reserve(buckets, amount)
        hard = [b for b, f in zip(buckets, full, strict=True) if f and b.hard]
        if hard:
            self._metrics.child(self._metrics.budget_rejections, hard[0].name.split(":")[0]).inc()
            raise BudgetExceeded(
                f"The {hard[0].label} is spent; it resets in {hard[0].resets_in / 3600:.1f} h.",
                retry_after=hard[0].resets_in,
            )
        warnings = [f"{b.label} exceeded" for b, f in zip(buckets, full, strict=True) if f]
        self._outstanding += amount
        self._metrics.budget_reserved.set(self._outstanding / 1_000_000)
        return Reservation(buckets, amount, warnings)

    async def settle(self, reservation: Reservation, cost: int | None) -> list[str]:
        """Turn the reservation into the real cost; returns soft-budget warnings."""
        self._outstanding -= reservation.amount
        self._metrics.budget_reserved.set(self._outstanding / 1_000_000)
        totals = await self.spend.settle(reservation.buckets, reservation.amount, cost or 0)
        warnings = []
        for bucket, total in zip(reservation.buckets, totals, strict=True):
            remaining = (bucket.limit - total) / 1_000_000
            scope, owner, period = bucket.name.split(":")[:3]
            self._metrics.child(self._metrics.budget_remaining, scope, owner, period).set(remaining)
            if total >= bucket.limit and not bucket.hard:
                warnings.append(f"{bucket.label} exceeded")
                log.warning(
                    "soft budget exceeded: %s (spent $%.6f)", bucket.label, total / 1_000_000
                )
        return warnings


def _limited(budget: Budget) -> bool:
    return budget.daily_usd is not None or budget.monthly_usd is not None
