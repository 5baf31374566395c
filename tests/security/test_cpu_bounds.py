"""Work that costs the gateway CPU is bounded and admitted like generation: a token count
is rate-limited and leaves a ledger row (cost 0), and no request may offer more tools than
any client sends — a body of tens of thousands of tools once stalled the event loop for
seconds, and every tenant with it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.hostile import LIMITED, Hostile

pytestmark = pytest.mark.e2e
COUNT = "/v1/messages/count_tokens"


def _tools(n: int, wire: str) -> list[dict[str, Any]]:
    schema = {"type": "object", "properties": {"x": {"type": "string"}}}
    if wire == "anthropic":
        return [{"name": f"t{i}", "input_schema": schema} for i in range(n)]
    if wire == "responses":
        return [{"type": "function", "name": f"t{i}", "parameters": schema} for i in range(n)]
    return [{"type": "function", "function": {"name": f"t{i}", "parameters": schema}}
            for i in range(n)]  # fmt: skip


def test_token_counts_are_admitted_like_generation_and_leave_a_row(hostile: Hostile) -> None:
    body = {"model": "claude", "messages": [{"role": "user", "content": "hi"}]}
    statuses = [hostile.post(COUNT, body, key=LIMITED).status_code for _ in range(3)]
    assert statuses[0] == 200 and statuses[-1] == 429, statuses  # rpm 2: no third this minute
    refused = hostile.post(COUNT, body, key=LIMITED)
    assert refused.json()["type"] == "error"  # in Anthropic's format
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert float(refused.headers["retry-after"]) > 0
    rows = [r for r in hostile.rows() if r["endpoint"] == "count_tokens"][-4:]
    assert [r["status"] for r in rows] == [*statuses, 429]
    assert all(r["cost_micro_usd"] == 0 and r["key_name"] == "limited" for r in rows)


@pytest.mark.parametrize(
    ("path", "wire", "model"),
    [
        ("/v1/chat/completions", "openai", "openai"),
        ("/v1/messages", "anthropic", "claude"),
        (COUNT, "anthropic", "claude"),
        ("/v1/responses", "responses", "openai"),
    ],
)
def test_more_tools_than_any_client_sends_is_a_400(
    hostile: Hostile, path: str, wire: str, model: str
) -> None:
    body: dict[str, Any] = {"model": model, "tools": _tools(513, wire), "max_tokens": 4}
    if wire == "responses":
        body = {"model": model, "input": "hi", "tools": _tools(513, wire)}
    else:
        body["messages"] = [{"role": "user", "content": "hi"}]
    reply = hostile.post(path, body, headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text[:300]
    assert "at most 512 tools" in reply.text
    body["tools"] = _tools(512, wire)
    assert hostile.post(path, body).status_code == 200
    hostile.healthy()


def test_stored_response_reads_and_the_model_list_are_admitted_and_kept(hostile: Hostile) -> None:
    auth = {"Authorization": f"Bearer {LIMITED}"}
    paths = ["/v1/models", "/v1/responses/resp_none", "/v1/models", "/v1/responses/resp_none"]
    statuses = [httpx.get(hostile.url + path, headers=auth).status_code for path in paths]
    assert 429 in statuses, statuses  # rpm 2, whatever the endpoint
    assert set(statuses) <= {200, 404, 429}
    rows = [r for r in hostile.rows() if r["key_name"] == "limited"][-4:]
    assert [(r["endpoint"], r["status"]) for r in rows] == [
        ("models" if "models" in path else "stored_response", status)
        for path, status in zip(paths, statuses, strict=True)
    ]
    assert all(r["cost_micro_usd"] == 0 for r in rows)
