"""The workers' side of the heavy lane: which requests go to it, and the forwarding — the
request as the client sent it (body streamed, never buffered here), the answer relayed as
the lane sends it. The lane serves the request whole (authentication, limits, the ledger's
row); the worker only carries bytes, in small steps, so its loop stays free for small
requests. While the lane is away (starting, restarting) everything is served here.

Sent to the lane: a body declared larger than the threshold (up to `max_body_bytes`; past
it the worker answers 413 itself), a body of unknown size, and — decided after the body is
read — a Responses request whose stored conversation is larger (`HeavyRequest`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import aiohttp
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import InvalidRequest, LaneUnavailable, PayloadTooLarge
from gateway.metrics import GatewayMetrics

log = logging.getLogger("spillover")

_PROBE_S = 2.0
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"date"}
)


class HeavyLane:
    """Forward requests to the lane on `socket`; `up` while its last probe answered."""

    def __init__(self, socket: str, threshold: int, max_body: int, metrics: GatewayMetrics) -> None:
        self.threshold = threshold
        self._max_body = max_body
        self._metrics = metrics
        self._socket = socket
        self.up = False
        self._session: aiohttp.ClientSession | None = None
        self._prober: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=self._socket, limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=1.0, sock_read=600),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Content-Type", "Accept", "Accept-Encoding"),
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        self._prober = asyncio.get_running_loop().create_task(self._probe())

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        if self._session is not None:
            await self._session.close()

    async def _probe(self) -> None:
        assert self._session is not None
        while True:
            try:
                async with self._session.get(
                    "http://lane/health/live", timeout=aiohttp.ClientTimeout(total=2)
                ) as reply:
                    up = reply.status == 200
            except (aiohttp.ClientError, TimeoutError):
                up = False
            if up != self.up:
                level, state = (logging.INFO, "up") if up else (logging.WARNING, "away")
                log.log(level, "heavy lane %s: large requests are served %s", state,
                        "there" if up else "here")  # fmt: skip
            self.up = up
            self._metrics.heavy_lane_up.set(1 if up else 0)
            await asyncio.sleep(_PROBE_S)

    def takes(self, scope: Scope, headers: dict[bytes, bytes]) -> bool:
        """A POST whose body is declared larger than the threshold (and within the body
        limit), or of unknown size."""
        if not self.up or scope["method"] != "POST":
            return False
        declared = headers.get(b"content-length")
        if declared is None:
            return b"transfer-encoding" in headers
        return declared.isdigit() and self.threshold < int(declared) <= self._max_body

    async def scrape(self) -> str | None:
        """The lane's `/metrics`, or None while it is away."""
        if not self.up or self._session is None:
            return None
        try:
            async with self._session.get(
                "http://lane/metrics", timeout=aiohttp.ClientTimeout(total=2)
            ) as reply:
                return await reply.text() if reply.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    def takes_history(self, size: int) -> bool:
        """A stored conversation of `size` bytes is the lane's to load and forward."""
        return self.up and size > self.threshold

    async def forward(
        self, scope: Scope, receive: Receive, send: Send, body: bytes | None, reason: str
    ) -> bool:
        """The request to the lane and its answer back; `body` when it was read already, else
        streamed from `receive`. False when the lane was away before a byte was read (serve
        it here); LaneUnavailable when it left with the request in hand."""
        assert self._session is not None
        path = scope["raw_path"].decode("latin-1") if scope.get("raw_path") else scope["path"]
        query = scope.get("query_string", b"")
        url = "http://lane" + path + ("?" + query.decode("latin-1") if query else "")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k not in _HOP_BY_HOP and k != b"host"]  # fmt: skip
        streamed = _Upload(receive, self._max_body)
        counter = self._metrics.child(self._metrics.heavy_lane_requests, reason)
        try:
            reply = await self._session.request(
                scope["method"], url, headers=headers,
                data=body if body is not None else streamed.chunks(),
            )  # fmt: skip
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.up = False
            self._metrics.heavy_lane_up.set(0)
            if streamed.failure is not None:
                raise streamed.failure from None
            if body is None and not streamed.started:
                return False
            raise LaneUnavailable("the gateway could not take this request now: try again") from exc
        counter.inc()
        async with reply:
            await self._relay(reply, receive, send)
        return True

    async def _relay(self, reply: aiohttp.ClientResponse, receive: Receive, send: Send) -> None:
        headers = [(k.lower(), v) for k, v in reply.raw_headers if k.lower() not in _HOP_BY_HOP]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        gone = asyncio.get_running_loop().create_task(_disconnected(receive))
        try:
            async for chunk in reply.content.iter_any():
                if gone.done():
                    return  # the client left: closing the reply tells the lane to stop
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except aiohttp.ClientError:
            log.warning("heavy lane: an answer broke off while it was relayed")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()


class _Upload:
    """The client's body as it arrives, held to the body limit."""

    def __init__(self, receive: Receive, limit: int) -> None:
        self._receive = receive
        self._limit = limit
        self.failure: Exception | None = None
        self.started = False

    async def chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        size = 0
        while True:
            message: Message = await self._receive()
            if message["type"] == "http.disconnect":
                self.failure = InvalidRequest("client disconnected while sending the body")
                raise self.failure
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._limit:
                self.failure = PayloadTooLarge(f"request body is over the {self._limit}-byte limit")
                raise self.failure
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


def failed_read(exc: Exception) -> Receive:
    """A `receive` that fails as the forwarded body did, for the reader that answers it."""

    async def receive() -> Message:
        raise exc

    return receive


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
