"""Off-path HTTP checks (httpx): wait for a service's readiness endpoint."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx


def wait_ready(
    url: str,
    timeout_s: float,
    alive: Callable[[], bool] = lambda: True,
    client: httpx.Client | None = None,
    interval_s: float = 0.2,
) -> bool:
    """True once `url` answers 200; False when `timeout_s` passes or `alive()` turns false."""
    http = client or httpx.Client(timeout=1.0)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and alive():
            try:
                if http.get(url).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(interval_s)
        return False
    finally:
        if client is None:
            http.close()
