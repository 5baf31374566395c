"""What every protocol's validator asks of a number field, in one place; each validator says
a failure in its own API's words. JSON's `true` is not a number here, though Python's bool is
an int."""

from __future__ import annotations

from typing import Any


def is_int(value: Any, low: int, high: int | None = None) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )


def is_number(value: Any, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high
