"""The request pipeline in process: the real ASGI app and every stage, fake providers behind
the provider contract. What a client sees and what the ledger keeps, in milliseconds."""

from __future__ import annotations

from pathlib import Path

import orjson

from gateway.errors import Overloaded, UpstreamBadRequest, UpstreamRateLimited
from tests.support.inprocess import FakeProvider, FakeStream, completion, running

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
TWO_TARGETS = """\
  chat:
    targets:
      - {provider: primary, model: m1}
      - {provider: backup, model: m2}
"""
ONE_TARGET = """\
  chat:
    targets:
      - {provider: primary, model: m1}
"""


async def test_an_overloaded_primary_fails_over_and_one_row_says_so(tmp_path: Path) -> None:
    primary = FakeProvider("primary", [Overloaded("busy", status=503)])
    backup = FakeProvider("backup", [completion("from backup")])
    async with running(tmp_path, TWO_TARGETS, {"primary": primary, "backup": backup}) as gw:
        reply = await gw.client.post("/v1/chat/completions", json=CHAT)
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"] == "from backup"
    assert reply.headers["x-spillover-provider"] == "backup"
    assert reply.headers["x-spillover-attempts"] == "2"
    assert [c.body["model"] for c in primary.calls + backup.calls] == ["m1", "m2"]
    [row] = gw.rows()
    assert (row["provider"], row["status"], row["fell_back"], row["attempts"]) == (
        "backup",
        200,
        1,
        2,
    )


async def test_an_upstream_that_judges_the_request_invalid_is_not_retried(tmp_path: Path) -> None:
    primary = FakeProvider("primary", [UpstreamBadRequest("bad tool schema", param="tools")])
    backup = FakeProvider("backup")
    async with running(tmp_path, TWO_TARGETS, {"primary": primary, "backup": backup}) as gw:
        reply = await gw.client.post("/v1/chat/completions", json=CHAT)
        targets = (await gw.client.get("/admin/targets")).status_code  # not an admin key
    assert reply.status_code == 400
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert backup.calls == []
    assert targets == 403
    [row] = gw.rows()
    assert (row["status"], row["attempts"]) == (400, 1)


async def test_a_rate_limited_single_target_answers_503_with_retry_after(tmp_path: Path) -> None:
    primary = FakeProvider("primary", [UpstreamRateLimited("slow down", retry_after=30)])
    async with running(tmp_path, ONE_TARGET, {"primary": primary}) as gw:
        reply = await gw.client.post("/v1/chat/completions", json=CHAT)
    assert reply.status_code == 503
    assert 1 <= int(reply.headers["retry-after"]) <= 30
    attempts = reply.json()["error"]["attempts"]
    assert [a["error"] for a in attempts] == ["rate_limited"]
    assert len(primary.calls) == 1


async def test_a_stream_is_relayed_event_by_event_and_billed(tmp_path: Path) -> None:
    primary = FakeProvider("primary", [lambda call: FakeStream(["a", "b", "c"], prompt_tokens=9)])
    async with running(tmp_path, ONE_TARGET, {"primary": primary}) as gw:
        reply = await gw.client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/event-stream")
    events = [e for e in reply.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    words = [
        orjson.loads(e[6:])["choices"][0]["delta"].get("content")
        for e in events[:-1]
        if orjson.loads(e[6:])["choices"]
    ]
    assert "".join(w or "" for w in words) == "abc"
    [row] = gw.rows()
    assert (row["stream"], row["prompt_tokens"], row["completion_tokens"]) == (1, 9, 3)


async def test_an_unknown_key_never_reaches_a_provider(tmp_path: Path) -> None:
    primary = FakeProvider("primary")
    async with running(tmp_path, ONE_TARGET, {"primary": primary}) as gw:
        reply = await gw.client.post(
            "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer sk-nope"}
        )
    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "authentication_error"
    assert primary.calls == []


async def test_lowest_cost_routes_by_the_price_the_ledger_charges(tmp_path: Path) -> None:
    routes = """\
  chat:
    strategy: lowest_cost
    targets:
      - {provider: primary, model: m1}
      - {provider: backup, model: m2}
"""
    prices = {
        "primary": "prices: {m1: {input_per_mtok: 10, output_per_mtok: 30}}",
        "backup": "prices: {m2: {input_per_mtok: 1, output_per_mtok: 3}}",
    }
    primary, backup = FakeProvider("primary"), FakeProvider("backup")
    providers = {"primary": primary, "backup": backup}
    async with running(tmp_path, routes, providers, prices) as gw:
        reply = await gw.client.post("/v1/chat/completions", json=CHAT)
    assert reply.headers["x-spillover-provider"] == "backup"
    assert primary.calls == []
    [row] = gw.rows()
    # 7 prompt tokens at $1/M and 2 completion tokens at $3/M: 13 micro-dollars.
    assert (row["provider"], row["cost_micro_usd"]) == ("backup", 13)
