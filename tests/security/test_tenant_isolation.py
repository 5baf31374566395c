"""One tenant's bad requests never change what another tenant sees: a client's own mistakes
never count against a target, and a drill's faults stay inside their scope and time."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.hostile import TEAM_B, Hostile
from tests.support.processes import GATEWAY_KEY, MockUpstream, gateway_config, start_gateway

pytestmark = pytest.mark.e2e


def _breaker(hostile: Hostile, key: str) -> dict[str, object]:
    state: dict[str, object] = hostile.targets()[key]["breaker"]
    return state


def test_a_request_no_target_can_express_is_a_400_and_blames_no_target(
    hostile: Hostile, anthropic_upstream: MockUpstream
) -> None:
    for _ in range(10):
        reply = hostile.chat("claude", n=2)
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["type"] == "invalid_request_error"
        assert "n > 1" in reply.json()["error"]["message"]
    assert anthropic_upstream.received() == []  # refused before any upstream call
    assert _breaker(hostile, "claude/claude-sonnet-4-5")["phase"] == "closed"
    assert hostile.chat("claude", key=TEAM_B).status_code == 200


def test_a_target_that_cannot_serve_a_request_is_skipped_not_failed(
    hostile: Hostile, anthropic_upstream: MockUpstream, openai_upstream: MockUpstream
) -> None:
    reply = hostile.chat("claude-then-openai", n=2)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-spillover-provider"] == "primary"
    assert anthropic_upstream.received() == []
    assert _breaker(hostile, "claude/claude-sonnet-4-5")["phase"] == "closed"


def test_malformed_content_is_the_gateways_400_whatever_the_target(hostile: Hostile) -> None:
    for route in ("tail", "claude", "openai"):
        for _ in range(4):
            reply = hostile.post(
                "/v1/chat/completions",
                {"model": route, "messages": [{"role": "user", "content": [1]}]},
            )
            assert reply.status_code == 400, reply.text
            assert reply.json()["error"]["param"] == "messages[0].content[0]"
    for key in ("tail/openai/gpt-4o", "claude/claude-sonnet-4-5", "primary/gpt-4o"):
        assert _breaker(hostile, key)["phase"] == "closed"
    for route in ("tail", "claude", "openai"):
        assert hostile.chat(route, key=TEAM_B).status_code == 200


def test_upstream_4xx_for_a_bad_request_is_never_retried_nor_counted(
    hostile: Hostile, openai_upstream: MockUpstream
) -> None:
    openai_upstream.configure(error_rate=1.0, error_status=400, error_code="invalid_value")
    for _ in range(10):
        assert hostile.chat("openai").status_code == 400
    assert len(openai_upstream.received()) == 10  # one attempt each: never retried
    openai_upstream.configure(error_rate=0.0)
    assert _breaker(hostile, "primary/gpt-4o")["phase"] == "closed"
    assert hostile.chat("openai", key=TEAM_B).status_code == 200


def test_a_scoped_drill_fault_touches_only_its_own_traffic(hostile: Hostile) -> None:
    for kind, extra in (("error", {"status": 503}), ("rate_limit", {"retry_after_s": 60})):
        fault = {"kind": kind, "provider": "primary", "scope": "drill-1", "duration_s": 90}
        assert hostile.admin("POST", "/admin/faults", json={**fault, **extra}).status_code == 201
        drilled = {"x-spillover-drill": "drill-1"}
        for _ in range(6):
            reply = hostile.post(
                "/v1/chat/completions",
                {"model": "openai", "messages": [{"role": "user", "content": "hi"}]},
                headers=drilled,
            )
            assert reply.status_code in (502, 503), reply.text
        target = hostile.targets()["primary/gpt-4o"]
        assert target["breaker"]["phase"] == "closed"
        assert target["cooldown_remaining_s"] == 0
        assert hostile.chat("openai", key=TEAM_B).status_code == 200
        hostile.admin("DELETE", "/admin/faults")


def test_fault_parameters_are_bounded_by_the_faults_own_time(hostile: Hostile) -> None:
    too_long_wait = {"kind": "rate_limit", "retry_after_s": 1e9, "duration_s": 60}
    reply = hostile.admin("POST", "/admin/faults", json=too_long_wait)
    assert reply.status_code == 400
    assert "retry_after_s" in reply.json()["error"]["message"]
    too_long = {"kind": "error", "duration_s": 3600}
    reply = hostile.admin("POST", "/admin/faults", json=too_long)
    assert reply.status_code == 400
    assert "max_fault_s" in reply.json()["error"]["message"]


def test_a_cool_down_caused_by_a_fault_ends_with_the_fault(hostile: Hostile) -> None:
    fault = {"kind": "rate_limit", "provider": "primary", "retry_after_s": 1.5, "duration_s": 1.5}
    assert hostile.admin("POST", "/admin/faults", json=fault).status_code == 201
    assert hostile.chat("openai").status_code == 503
    assert hostile.targets()["primary/gpt-4o"]["cooldown_remaining_s"] <= 1.5
    time.sleep(1.6)
    assert hostile.targets()["primary/gpt-4o"]["cooldown_remaining_s"] == 0
    assert hostile.chat("openai", key=TEAM_B).status_code == 200


def test_a_cookie_an_upstream_sets_is_never_sent_for_anyone(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, logs_dir: Path
) -> None:
    # Hosted APIs sit behind CDNs that set cookies (api.openai.com: __cf_bm); a gateway that
    # kept them would send one tenant's cookie along with every other tenant's request. By
    # host name: a client keeps no cookie of an IP address anyway.
    config = gateway_config(openai_upstream.port, anthropic_upstream.port).replace(
        f"http://127.0.0.1:{openai_upstream.port}", f"http://localhost:{openai_upstream.port}"
    )
    assert "localhost" in config
    openai_upstream.configure(set_cookie="__cf_bm=tenant-a-session; Path=/; HttpOnly")
    proc = start_gateway(config, logs_dir, name="cookie-gateway")
    try:
        chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
        for key in (GATEWAY_KEY, GATEWAY_KEY, GATEWAY_KEY):
            reply = httpx.post(
                proc.url + "/v1/chat/completions",
                json=chat,
                headers={"Authorization": f"Bearer {key}"},
            )
            assert reply.status_code == 200, reply.text
            assert "set-cookie" not in reply.headers
    finally:
        proc.stop()
    sent = openai_upstream.received()
    assert len(sent) == 3
    assert [r["headers"].get("cookie") for r in sent] == [None, None, None]


def test_a_client_chosen_request_id_never_becomes_the_gateways(
    hostile: Hostile, openai_upstream: MockUpstream
) -> None:
    """Two tenants sending the same x-request-id once shared one id in the ledger, the logs
    and upstream; theirs is now kept beside ours."""
    same = {"x-request-id": "shared-id-1"}
    a = hostile.post("/v1/chat/completions", _chat_body(), headers=same)
    b = hostile.post("/v1/chat/completions", _chat_body(), key=TEAM_B, headers=same)
    assert a.status_code == b.status_code == 200
    ids = {a.headers["x-request-id"], b.headers["x-request-id"]}
    assert len(ids) == 2 and "shared-id-1" not in ids
    assert a.headers["x-client-request-id"] == "shared-id-1"
    sent = [r["headers"].get("x-request-id") for r in openai_upstream.received()[-2:]]
    assert "shared-id-1" not in sent
    rows = [r for r in hostile.rows() if r["client_request_id"] == "shared-id-1"][-2:]
    assert {r["request_id"] for r in rows} == ids


def _chat_body() -> dict[str, object]:
    return {"model": "openai", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
