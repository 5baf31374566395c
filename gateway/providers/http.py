"""The base of every hot-path adapter: one pooled aiohttp session per provider, and the two
ways to call an upstream — a whole response within `total`, or a stream whose headers
arrive within `first_byte`. Non-2xx answers and connection failures become our errors here."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from gateway.providers.base import AttemptTimeouts, Provider, UpstreamCall, UpstreamStream, Usage
from gateway.providers.sse import iter_events
from gateway.providers.upstream_errors import from_aiohttp, from_status
from gateway.tracing import traced
from policies.schema import AnthropicProvider, OpenAIProvider


class PooledHTTPProvider(Provider):
    def __init__(self, name: str, config: OpenAIProvider | AnthropicProvider) -> None:
        self.name = name
        self.address = urlsplit(config.api_base).hostname or ""  # server.address on spans
        self._pool_size = config.max_connections
        self._connect_s = config.timeouts.connect_ms / 1000
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._pool_size,
            limit_per_host=self._pool_size,
            ttl_dns_cache=300,
            enable_cleanup_closed=True,
            keepalive_timeout=30,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_s),
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
            # One session serves every tenant: a cookie an upstream (or its CDN) sets must
            # never ride along with anyone's next request.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _post(
        self, url: str, body: dict[str, Any], headers: Mapping[str, str], connect_s: float
    ) -> aiohttp.ClientResponse:
        """POST and return the response with its body unread; non-2xx raises our error."""
        assert self._session is not None, "provider not started"
        response = await self._session.post(
            url,
            data=orjson.dumps(body),
            headers=traced(headers),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_s),
        )
        if response.status >= 300:
            try:
                raw = await response.read()
            finally:
                response.release()
            raise from_status(response.status, response.headers, raw)
        return response

    async def _fetch(
        self, url: str, body: dict[str, Any], headers: Mapping[str, str], t: AttemptTimeouts
    ) -> tuple[bytes, Mapping[str, str]]:
        """POST and read the whole 2xx body within `t.total`."""
        try:
            async with asyncio.timeout(t.total):
                response = await self._post(url, body, headers, t.connect)
                try:
                    return await response.read(), response.headers
                finally:
                    response.release()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise from_aiohttp(exc, "total") from None

    async def _open_stream(
        self, url: str, body: dict[str, Any], headers: Mapping[str, str], t: AttemptTimeouts
    ) -> aiohttp.ClientResponse:
        """POST and return a 2xx response whose body (the event stream) is still unread."""
        try:
            async with asyncio.timeout(t.first_byte):
                return await self._post(url, body, headers, t.connect)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise from_aiohttp(exc, "first_byte") from None


class HTTPStream(UpstreamStream):
    """An upstream's event stream on one aiohttp response; a subclass's `_events` reads it
    through `_read` (the attempt's first-byte and idle timeouts applied) and says what goes
    to the client."""

    def __init__(self, response: aiohttp.ClientResponse, call: UpstreamCall) -> None:
        self._response = response
        self._call = call
        self.headers: Mapping[str, str] = response.headers
        self.usage = Usage()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    @abstractmethod
    def _events(self) -> AsyncIterator[bytes]: ...

    def _read(self) -> AsyncIterator[bytes]:
        timeouts = self._call.timeouts
        return iter_events(self._response, timeouts.first_byte, timeouts.idle)

    async def aclose(self) -> None:
        if not self._response.closed:
            self._response.close()
