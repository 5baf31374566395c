"""The contract of a client protocol (`ClientProtocol`), and the stream that translates a chat
target's chunks into it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from gateway.errors import SpilloverError, UpstreamStatusError
from gateway.pipeline.context import Asked, RequestContext
from gateway.pipeline.ports import HeaderList, Headers, Reply
from gateway.pipeline.relay import ClientStream
from gateway.providers.base import UpstreamResponse
from gateway.providers.sse import DataEvent, data_of
from gateway.providers.translate.chat_form import ChatChunkWriter, Event, sse
from gateway.providers.upstream_errors import upstream_object
from policies.schema import WireProtocol
from policies.schema_base import Endpoint


class ClientProtocol(ABC):
    """One client protocol, both ways. The pipeline calls, in order: `credentials`, `validate`,
    `read` (what was asked), then `answer` or `stream`, or `error`."""

    ingress: WireProtocol
    endpoint: Endpoint

    def credentials(self, headers: Headers) -> bytes | None:
        """The `Authorization` value to authenticate (`Bearer <key>`)."""
        return headers.get(b"authorization")

    @abstractmethod
    def validate(self, body: Any) -> None:
        """Raise `InvalidRequest` for a body the protocol's own API would refuse."""

    @abstractmethod
    async def read(self, ctx: RequestContext, body: dict[str, Any], headers: Headers) -> Asked:
        """What the client asked, read from its parsed, validated `body` (the route and the
        principal are known by then)."""

    @abstractmethod
    async def answer(self, ctx: RequestContext, response: UpstreamResponse) -> bytes:
        """The whole answer's body in the client's protocol."""

    @abstractmethod
    def stream(self, ctx: RequestContext, upstream: str, client: Reply) -> ClientStream:
        """The client's stream for events in the `upstream` protocol."""

    @abstractmethod
    def error(self, exc: SpilloverError, request_id: str) -> tuple[int, bytes, HeaderList]:
        """Status, body and protocol headers (Retry-After, …) for `exc`."""


class TranslatedStream(ABC):
    """A chat target's chunks rewritten, one by one, into the client's protocol by its
    `writer`; a subclass says how the stream ends (`_done`) and how it fails (`error`)."""

    def __init__(self, client: Reply, writer: ChatChunkWriter) -> None:
        self._client = client
        self._writer = writer
        self.disconnected = client.disconnected

    async def write(self, chunk: bytes) -> None:
        if isinstance(chunk, DataEvent):  # made from an object: read that, not its bytes
            data = chunk.data
        else:
            payload = data_of(chunk.rstrip(b"\n"))
            if payload == b"[DONE]":
                await self._send(await self._done())
                return
            if not payload:
                return  # comments and keep-alives carry nothing to translate
            data = upstream_object(payload)
        # Unreadable: the upstream's failure (the relay ends the stream with an error).
        try:
            events = list(self._writer.feed(data))
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise unreadable() from exc
        await self._send(events)

    async def _send(self, events: Iterable[Event]) -> None:
        rendered = b"".join(sse(e) for e in events)
        if rendered:
            await self._client.write(rendered)

    @abstractmethod
    async def _done(self) -> list[Event]:
        """The events that end the stream after the upstream's `[DONE]`."""

    @abstractmethod
    async def error(self, exc: SpilloverError) -> None: ...


def unreadable() -> UpstreamStatusError:
    return UpstreamStatusError("the upstream answered in a shape chat completions does not have")
