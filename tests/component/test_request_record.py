"""One record per request, one row made from it: what an answer's headers say of how it was
served is what its ledger row says — a whole answer's headers are read from the row itself,
a stream's (which leave before its outcome) say the same at its first event."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.errors import Overloaded
from tests.support.inprocess import (
    FakeProvider,
    FakeStream,
    RecordingReply,
    completion,
    inbound,
    serving_pipeline,
)

ROUTE = """\
  chat:
    targets:
      - {provider: primary, model: m1}
      - {provider: backup, model: m2}
"""
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
THEIRS = {b"x-client-request-id": b"client-7"}


def _told(reply: RecordingReply) -> dict[str, Any]:
    """What the answer's headers say, in the row's terms."""
    h = reply.headers
    return {
        "request_id": h["x-request-id"],
        "client_request_id": h.get("x-client-request-id"),
        "route": h.get("x-spillover-route"),
        "attempts": int(h["x-spillover-attempts"]),
        "provider": h.get("x-spillover-provider"),
        "model": h.get("x-spillover-model"),
    }


def _said(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in ("request_id", "client_request_id", "route", "attempts",
                                         "provider", "model")}  # fmt: skip


async def _served(
    tmp: Path, backup: FakeProvider, body: dict[str, Any]
) -> tuple[RecordingReply, dict[str, Any]]:
    """`body` answered after the primary target was busy; the reply and the request's row."""
    primary = FakeProvider("primary", [Overloaded("busy", status=503)])
    async with serving_pipeline(tmp, ROUTE, {"primary": primary, "backup": backup}) as s:
        reply = RecordingReply()
        await s.pipeline.handle(inbound("/v1/chat/completions", body, THEIRS), reply, None)
    [row] = s.rows()
    return reply, row


async def test_a_whole_answer_after_a_fallback_says_what_its_row_says(tmp_path: Path) -> None:
    reply, row = await _served(tmp_path, FakeProvider("backup", [completion("hi")]), CHAT)
    assert reply.status == 200
    assert _told(reply) == _said(row)
    assert _said(row) | {"fell_back": row["fell_back"]} == {
        "request_id": reply.headers["x-request-id"], "client_request_id": "client-7",
        "route": "chat", "attempts": 2, "provider": "backup", "model": "m2", "fell_back": 1,
    }  # fmt: skip


async def test_an_error_answer_says_what_its_row_says(tmp_path: Path) -> None:
    busy = FakeProvider("backup", [Overloaded("busy too", status=503)])
    reply, row = await _served(tmp_path, busy, CHAT)
    assert reply.status == 503
    assert _told(reply) == _said(row)
    assert (row["status"], row["error_class"], row["provider"]) == (
        503,
        "upstream_unavailable",
        None,
    )
    assert reply.json()["error"]["type"]  # the client's protocol's own error body


async def test_a_streams_headers_say_at_its_first_event_what_its_row_says(tmp_path: Path) -> None:
    streaming = FakeProvider("backup", [FakeStream(["a", "b"])])
    reply, row = await _served(tmp_path, streaming, {**CHAT, "stream": True})
    assert reply.status == 200 and reply.body.endswith(b"data: [DONE]\n\n")
    assert _told(reply) == _said(row)
    assert (row["stream"], row["completion_tokens"], row["provider"]) == (1, 2, "backup")
