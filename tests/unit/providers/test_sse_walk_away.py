"""A stream the client walks away from leaves nothing behind: closing an upstream answer
under a pending read ends that read with our error and keeps no answer, connection or
frame of the request alive (the soak bench once found ~1 KB of RSS per walk-away, when a
shared exception's traceback grew with each)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from gateway.errors import UpstreamFailure
from gateway.providers.sse import iter_events
from gateway.upstream.client import Answer, UpstreamClient
from gateway.upstream.connection import Connection
from tests.support.raw_upstream import raw_upstream

SLOW_STREAM = [
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n",
    b"d\r\ndata: first\n\n\r\n",
    30.0,  # never finishes: the client leaves first
]


async def _walk_away(client: UpstreamClient, url: str) -> None:
    answer = await client.request("GET", url, {}, b"")
    events = iter_events(answer, first_byte_s=5, idle_s=5)
    assert await events.__anext__() == b"data: first"
    pending = asyncio.ensure_future(events.__anext__())
    await asyncio.sleep(0.01)  # the read is waiting for the next event
    answer.close()  # what the disconnect watcher does when the client goes
    with pytest.raises(UpstreamFailure):
        await pending


def _alive(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


async def test_walk_aways_leave_no_answer_or_connection_alive() -> None:
    async with raw_upstream(lambda _seen: list(SLOW_STREAM)) as up:
        client = UpstreamClient()
        url = up.url("/stream")
        await _walk_away(client, url)
        before = _alive(Answer), _alive(Connection)
        for _ in range(30):
            await _walk_away(client, url)
        await asyncio.sleep(0.05)  # the cut connections' last callbacks
        after = _alive(Answer), _alive(Connection)
        await client.close()
    assert after[0] - before[0] <= 1 and after[1] - before[1] <= 1
    assert up.connections == 31  # each cut, none reused
