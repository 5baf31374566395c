"""The base of every hot-path adapter: one keep-alive pool per provider on the gateway's own
upstream client (`gateway/upstream/`), and the two ways to call an upstream — a whole
response within `total`, or a stream whose head arrives within `first_byte`. Non-2xx
answers and connection failures become our errors here."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from gateway.providers.base import AttemptTimeouts, Provider, UpstreamCall, UpstreamStream, Usage
from gateway.providers.sse import iter_events
from gateway.providers.upstream_errors import from_status, from_transport, late
from gateway.tracing import traced
from gateway.upstream.client import Answer, UpstreamClient
from gateway.upstream.errors import TransportError
from gateway.upstream.pool import PoolState
from policies.schema import AnthropicProvider, OpenAIProvider

# A whole answer read at most: the largest embeddings batch (2,048 inputs of 3,072 floats as
# JSON) is about 130 MB.
MAX_ANSWER_BYTES = 256 * 1024 * 1024
MAX_ERROR_BYTES = 1024 * 1024


class PooledHTTPProvider(Provider):
    def __init__(self, name: str, config: OpenAIProvider | AnthropicProvider) -> None:
        self.name = name
        self.address = urlsplit(config.api_base).hostname or ""  # server.address on spans
        self._pool_size = config.max_connections
        self._client: UpstreamClient | None = None

    async def start(self) -> None:
        self._client = UpstreamClient(max_connections=self._pool_size, keepalive_s=30.0)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    def connections(self) -> list[PoolState]:
        return self._client.pools() if self._client is not None else []

    async def _post(
        self, url: str, body: dict[str, Any], headers: Mapping[str, str], connect_s: float
    ) -> Answer:
        """POST and return the answer with its body unread; non-2xx raises our error. The
        caller's deadline (`total`, or a stream's `first_byte`) bounds the rest."""
        assert self._client is not None, "provider not started"
        answer = await self._client.request(
            "POST", url, traced(headers), orjson.dumps(body), connect_s
        )
        if answer.status >= 300:
            raw = await answer.read(MAX_ERROR_BYTES)
            raise from_status(answer.status, answer.headers, raw)
        return answer

    async def _fetch(
        self, url: str, body: dict[str, Any], headers: Mapping[str, str], t: AttemptTimeouts
    ) -> tuple[bytes, Mapping[str, str]]:
        """POST and read the whole 2xx body within `t.total`."""
        try:
            async with asyncio.timeout(t.total):
                answer = await self._post(url, body, headers, t.connect)
                return await answer.read(MAX_ANSWER_BYTES), answer.headers
        except TransportError as exc:
            raise from_transport(exc) from None
        except TimeoutError:
            raise late("total") from None

    async def _open_stream(
        self, url: str, body: dict[str, Any], headers: Mapping[str, str], t: AttemptTimeouts
    ) -> Answer:
        """POST and return a 2xx answer whose body (the event stream) is still unread."""
        try:
            async with asyncio.timeout(t.first_byte):
                return await self._post(url, body, headers, t.connect)
        except TransportError as exc:
            raise from_transport(exc) from None
        except TimeoutError:
            raise late("first_byte") from None


class HTTPStream(UpstreamStream):
    """An upstream's event stream on one answer; a subclass's `_events` reads it through
    `_read` (the attempt's first-byte and idle timeouts applied), says what goes to the
    client, and calls `_answer.release()` once the stream's last event is in."""

    def __init__(self, answer: Answer, call: UpstreamCall) -> None:
        self._answer = answer
        self._call = call
        self.headers: Mapping[str, str] = answer.headers
        self.usage = Usage()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    @abstractmethod
    def _events(self) -> AsyncIterator[bytes]: ...

    def _read(self) -> AsyncIterator[bytes]:
        timeouts = self._call.timeouts
        return iter_events(self._answer, timeouts.first_byte, timeouts.idle)

    async def aclose(self) -> None:
        self._answer.close()
