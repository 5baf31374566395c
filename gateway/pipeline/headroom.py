"""Provider rate-limit headroom from response headers: when a provider says a limit has
nothing left, the target is avoided until that limit resets — before it answers 429."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?"
    r"(?:(\d+(?:\.\d+)?)ms)?$"
)


def _duration_s(value: str) -> float | None:
    """OpenAI's reset format: `1s`, `6m0s`, `250ms`, `1h2m3.5s`."""
    match = _DURATION.match(value.strip())
    if not match or not any(match.groups()):
        return None
    h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s + ms / 1000


def _remaining_zero(headers: Mapping[str, str], name: str) -> bool:
    value = headers.get(name)
    try:
        return value is not None and float(value) <= 0
    except ValueError:
        return False


def exhausted_for(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until the exhausted limit resets, or None when there is headroom."""
    waits: list[float] = []
    for kind in ("requests", "tokens"):
        if _remaining_zero(headers, f"x-ratelimit-remaining-{kind}"):
            reset = _duration_s(headers.get(f"x-ratelimit-reset-{kind}", "") or "")
            waits.append(reset if reset is not None else 1.0)
        if _remaining_zero(headers, f"anthropic-ratelimit-{kind}-remaining"):
            stamp = headers.get(f"anthropic-ratelimit-{kind}-reset")
            try:
                at = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
            except ValueError:
                at = None
            waits.append(max(0.0, at.timestamp() - now) if at else 1.0)
    return max(waits) if waits else None
