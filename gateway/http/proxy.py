"""The `/v1/*` surface as plain ASGI: the request handed to the pipeline's front door
(`gateway.pipeline.front`) as it arrives, its answer written back as the pipeline gives it.
A body too large for a worker goes to the heavy lane unread."""

from __future__ import annotations

from functools import partial

from starlette.types import Receive, Scope, Send

from gateway.errors import SpilloverError
from gateway.http.body import read_bounded
from gateway.http.heavy_lane import HeavyLane, failed_read
from gateway.pipeline.front import Pipeline
from gateway.pipeline.ports import HandOff, HeaderList, Inbound


class ProxyApp:
    """The hot path's transport: ASGI in, the pipeline, ASGI out."""

    def __init__(self, pipeline: Pipeline, lane: HeavyLane | None = None) -> None:
        self.pipeline = pipeline
        self._lane = lane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        lane = self._lane
        hand_off: HandOff | None = None
        if lane is not None:
            if lane.takes(scope, headers):
                try:
                    if await lane.forward(scope, receive, send, None, "body"):
                        return  # answered by the lane, which keeps the row
                except SpilloverError as exc:
                    # The body failed on its way (past the limit, the lane gone with it in
                    # hand): answered by the pipeline, with a row, where reading it fails.
                    receive = failed_read(exc)
            hand_off = partial(_hand_off, lane, scope, receive, send)
        inbound = Inbound(
            method=scope["method"],
            path=scope["path"],
            headers=headers,
            query=scope.get("query_string", b""),
            read_body=partial(read_bounded, headers, receive),
        )
        await self.pipeline.handle(inbound, AsgiReply(send, receive), hand_off)


async def _hand_off(
    lane: HeavyLane, scope: Scope, receive: Receive, send: Send, body: bytes
) -> None:
    await lane.forward(scope, receive, send, body, "history")


class AsgiReply:
    """The pipeline's `Reply` over ASGI."""

    def __init__(self, send: Send, receive: Receive) -> None:
        self._send = send
        self._receive = receive

    async def start(self, status: int, headers: HeaderList) -> None:
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, chunk: bytes) -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def end(self, chunk: bytes = b"") -> None:
        await self._send({"type": "http.response.body", "body": chunk, "more_body": False})

    async def disconnected(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
