"""Off-path HTTP checks (httpx): wait for a service's readiness endpoint; the image's health
check."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import httpx
import typer


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


def health(
    ready: bool = False,
    port: int | None = None,
) -> None:
    """Exit 0 when the gateway on this machine answers its health check (the image's
    HEALTHCHECK): liveness, or with --ready readiness; the port from SPILLOVER_PORT."""
    where = port or int(os.environ.get("SPILLOVER_PORT", "4000"))
    path = "/health/ready" if ready else "/health/live"
    try:
        answered = httpx.get(f"http://127.0.0.1:{where}{path}", timeout=2.0).status_code
    except httpx.HTTPError:
        answered = 0
    raise typer.Exit(0 if answered == 200 else 1)
