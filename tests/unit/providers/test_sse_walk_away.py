"""A stream the client walks away from leaves nothing behind: closing an upstream response
under a pending read must not keep that request's frames, buffers and response alive
(aiohttp raises one shared exception instance there, whose traceback would otherwise grow
with every walk-away — the soak bench found it as ~1 KB of RSS per walk-away)."""

from __future__ import annotations

import asyncio
import gc

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.errors import UpstreamFailure
from gateway.providers.sse import iter_events


async def _slow_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b"data: first\n\n")
    await asyncio.sleep(30)  # never finishes: the client leaves first
    return response


async def _walk_away(session: aiohttp.ClientSession, url: str) -> None:
    response = await session.get(url)
    events = iter_events(response, first_byte_s=5, idle_s=5)
    assert await events.__anext__() == b"data: first"
    pending = asyncio.ensure_future(events.__anext__())
    await asyncio.sleep(0.01)  # the read is waiting for the next event
    response.close()  # what the disconnect watcher does when the client goes
    with pytest.raises(UpstreamFailure):
        await pending


def _alive(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


async def test_walk_aways_leave_no_response_alive() -> None:
    app = web.Application()
    app.router.add_get("/stream", _slow_stream)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        url = str(server.make_url("/stream"))
        await _walk_away(session, url)
        before = _alive(aiohttp.ClientResponse)
        for _ in range(30):
            await _walk_away(session, url)
        assert _alive(aiohttp.ClientResponse) - before <= 1
