"""How the limit and spend counters in the state are named, for the stages that count and
the console that reads the counts back."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


def limit_scope(kind: str, owner: str) -> str:
    """A limit's scope in the limiter's counters: `key:app`, `team:qa`, `route:gpt-4o`."""
    return f"{kind}:{owner}"


def limit_counter(scope: str, unit: str) -> str:
    """The limiter's counter of `unit` (concurrent) under `scope`."""
    return f"{scope}:{unit}"


def rate_counter(scope: str, unit: str, per_minute: int) -> str:
    """A rate's counter (`key:app:rpm@60`): named by its limit too, so a changed limit starts
    a fresh one — a raised limit applies at once instead of after the old one's debt."""
    return f"{scope}:{unit}@{per_minute}"


def bucket_name(scope: str, owner: str, period: str, period_id: str) -> str:
    """A budget's spend counter: `key:app:day:2026-12-01` (settle reads the first three back)."""
    return f"{scope}:{owner}:{period}:{period_id}"


def periods(now: float, tz: ZoneInfo) -> dict[str, tuple[str, float]]:
    """Current day and month ids in `tz`, and the seconds left in each."""
    local = datetime.fromtimestamp(now, tz)
    day_end = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    month_end = (local.replace(day=28) + timedelta(days=4)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    return {
        "day": (local.strftime("%Y-%m-%d"), day_end.timestamp() - now),
        "month": (local.strftime("%Y-%m"), month_end.timestamp() - now),
    }
