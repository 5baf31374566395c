"""Ids unique across processes and replicas without a uuid4 per request: a random prefix
drawn once per process, then a counter."""

from __future__ import annotations

import itertools
import os

_PREFIX = os.urandom(8).hex()
_COUNTER = itertools.count(1)


def new_id() -> str:
    return f"{_PREFIX}{next(_COUNTER):012x}"
