"""Retries, hedging and stream resume through the pipeline's front door, with no HTTP layer:
fake providers behind the provider contract, the request handed in as a transport would,
and what the client would have received read back from the reply — and from the ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from gateway.errors import Overloaded, UpstreamRateLimited, UpstreamStatusError
from gateway.providers.base import UpstreamCall, UpstreamResponse, UpstreamStream
from tests.support.inprocess import (
    FakeProvider,
    FakeStream,
    RecordingReply,
    completion,
    inbound,
    serving_pipeline,
)

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
ONE_TARGET = """\
  chat:
    retry: {max_attempts: 2, backoff_cap_ms: 2000, budget_min_retries: 50}
    targets:
      - {provider: primary, model: m1}
"""


def _route(policy: str) -> str:
    return f"""\
  chat:
    {policy}
    targets:
      - {{provider: primary, model: m1}}
      - {{provider: backup, model: m2}}
"""


@dataclass
class SlowProvider(FakeProvider):
    """A fake that takes `delay` seconds to answer, and notes when it was cancelled."""

    delay: float = 1.0
    cancelled: bool = False

    async def send(self, call: UpstreamCall) -> UpstreamResponse | UpstreamStream:
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return await super().send(call)


class BrokenStream(FakeStream):
    """Streams its words, then fails as an upstream connection that dropped would."""

    async def _events(self) -> AsyncIterator[bytes]:
        async for event in super()._events():
            if event == b"data: [DONE]\n\n":
                raise UpstreamStatusError("the upstream connection dropped")
            yield event


def _text(reply: RecordingReply) -> str:
    words = []
    for event in reply.body.decode().split("\n\n"):
        if event.startswith("data: {"):
            for choice in orjson.loads(event[6:]).get("choices") or []:
                words.append(choice["delta"].get("content") or "")
    return "".join(words)


async def test_an_overloaded_target_is_tried_again_after_a_backoff(tmp_path: Path) -> None:
    primary = FakeProvider("primary", [Overloaded("busy", status=503), completion("ok")])
    async with serving_pipeline(tmp_path, ONE_TARGET, {"primary": primary}) as served:
        reply = RecordingReply()
        await served.pipeline.handle(inbound("/v1/chat/completions", CHAT), reply, None)
    assert reply.status == 200
    assert reply.json()["choices"][0]["message"]["content"] == "ok"
    assert reply.headers["x-spillover-attempts"] == "2"
    assert len(primary.calls) == 2
    [row] = served.rows()
    assert (row["status"], row["attempts"], row["provider"]) == (200, 2, "primary")


async def test_a_rate_limited_single_target_tells_the_client_when_to_return(tmp_path: Path) -> None:
    """A target cooling down for its Retry-After leaves the queue: the client is told when
    to come back instead of the gateway holding the request."""
    primary = FakeProvider(
        "primary", [UpstreamRateLimited("slow down", retry_after=30), completion()]
    )
    async with serving_pipeline(tmp_path, ONE_TARGET, {"primary": primary}) as served:
        reply = RecordingReply()
        await served.pipeline.handle(inbound("/v1/chat/completions", CHAT), reply, None)
    assert reply.status == 503
    assert 1 <= int(reply.headers["retry-after"]) <= 30
    assert len(primary.calls) == 1


async def test_retries_end_at_max_attempts_with_every_attempt_listed(tmp_path: Path) -> None:
    primary = FakeProvider("primary", [Overloaded("busy", status=503)])
    async with serving_pipeline(tmp_path, ONE_TARGET, {"primary": primary}) as served:
        reply = RecordingReply()
        await served.pipeline.handle(inbound("/v1/chat/completions", CHAT), reply, None)
    assert reply.status == 503
    assert [a["error"] for a in reply.json()["error"]["attempts"]] == ["overloaded"] * 2
    assert len(primary.calls) == 2
    [row] = served.rows()
    assert (row["status"], row["attempts"]) == (503, 2)


async def test_a_slow_first_target_is_hedged_and_the_loser_cancelled(tmp_path: Path) -> None:
    primary = SlowProvider("primary", [completion("late")])
    backup = FakeProvider("backup", [completion("from the hedge")])
    route = _route("hedge: {delay_ms: 20, budget_ratio: 1.0, budget_min: 5}")
    async with serving_pipeline(tmp_path, route, {"primary": primary, "backup": backup}) as served:
        reply = RecordingReply()
        await served.pipeline.handle(inbound("/v1/chat/completions", CHAT), reply, None)
    assert reply.status == 200
    assert reply.json()["choices"][0]["message"]["content"] == "from the hedge"
    assert reply.headers["x-spillover-provider"] == "backup"
    assert primary.cancelled
    [row] = served.rows()
    assert (row["provider"], row["attempts"]) == ("backup", 2)


async def test_a_hedge_that_fails_leaves_the_first_attempt_to_answer(tmp_path: Path) -> None:
    primary = SlowProvider("primary", [completion("worth the wait")], delay=0.3)
    backup = FakeProvider("backup", [Overloaded("busy", status=503)])
    route = _route("hedge: {delay_ms: 20, budget_ratio: 1.0, budget_min: 5}")
    async with serving_pipeline(tmp_path, route, {"primary": primary, "backup": backup}) as served:
        reply = RecordingReply()
        await served.pipeline.handle(inbound("/v1/chat/completions", CHAT), reply, None)
    assert reply.status == 200
    assert reply.json()["choices"][0]["message"]["content"] == "worth the wait"
    assert reply.headers["x-spillover-provider"] == "primary"
    assert len(backup.calls) == 1
    [row] = served.rows()
    assert (row["provider"], row["attempts"], row["status"]) == ("primary", 2, 200)


async def test_a_broken_stream_is_resumed_on_the_next_target(tmp_path: Path) -> None:
    primary = FakeProvider("primary", [lambda _call: BrokenStream(["Once ", "upon "])])
    backup = FakeProvider("backup", [lambda _call: FakeStream(["a ", "time."])])
    route = _route("resume_streams: true")
    async with serving_pipeline(tmp_path, route, {"primary": primary, "backup": backup}) as served:
        reply = RecordingReply()
        request = inbound("/v1/chat/completions", {**CHAT, "stream": True})
        await served.pipeline.handle(request, reply, None)
    assert reply.status == 200 and reply.ended
    assert _text(reply) == "Once upon a time."
    assert reply.body.count(b"data: [DONE]") == 1
    [continued] = backup.calls
    assert continued.continuation
    assert continued.body["messages"][-1] == {"role": "assistant", "content": "Once upon "}
    [row] = served.rows()
    assert (row["status"], row["provider"], row["resumed"], row["resumed_by"]) == (
        200,
        "primary",
        1,
        "backup/m2",
    )


async def test_a_broken_stream_without_resume_ends_with_an_error_event(tmp_path: Path) -> None:
    primary = FakeProvider("primary", [lambda _call: BrokenStream(["Once "])])
    backup = FakeProvider("backup")
    async with serving_pipeline(
        tmp_path, _route("resume_streams: false"), {"primary": primary, "backup": backup}
    ) as served:
        reply = RecordingReply()
        request = inbound("/v1/chat/completions", {**CHAT, "stream": True})
        await served.pipeline.handle(request, reply, None)
    assert reply.status == 200 and reply.ended  # the status went out with the first byte
    assert _text(reply) == "Once "
    assert b'"error"' in reply.body and b"data: [DONE]" not in reply.body
    assert backup.calls == []
    [row] = served.rows()
    assert row["status"] != 200
