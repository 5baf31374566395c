"""The readiness probe (httpx, off the hot path) against respx-mocked answers."""

from __future__ import annotations

import httpx
import respx

from gateway.cli.probe import wait_ready


@respx.mock
def test_ready_after_a_refusal_and_a_503() -> None:
    route = respx.get("http://gw.test/health/ready").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(503), httpx.Response(200)]
    )
    assert wait_ready("http://gw.test/health/ready", 5, interval_s=0.01)
    assert route.call_count == 3


@respx.mock
def test_gives_up_on_timeout_or_when_the_process_died() -> None:
    respx.get("http://gw.test/health/ready").mock(return_value=httpx.Response(503))
    assert not wait_ready("http://gw.test/health/ready", 0.1, interval_s=0.01)
    assert not wait_ready("http://gw.test/health/ready", 5, alive=lambda: False)
