"""The pooled aiohttp session every hot-path adapter uses, and the two ways they call an
upstream: a whole response within `total`, or a stream whose headers arrive within
`first_byte`. Non-2xx answers and connection failures become our errors here."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from gateway.providers.base import AttemptTimeouts
from gateway.upstream_errors import from_aiohttp, from_status
from policies.schema import Timeouts


def new_session(max_connections: int, timeouts: Timeouts) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=max_connections,
        ttl_dns_cache=300,
        enable_cleanup_closed=True,
        keepalive_timeout=30,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect_ms / 1000),
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
    )


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: Mapping[str, str],
    timeouts: AttemptTimeouts,
) -> tuple[bytes, Mapping[str, str]]:
    """POST and read the whole 2xx body within `timeouts.total`."""
    try:
        async with asyncio.timeout(timeouts.total):
            async with session.post(
                url,
                data=orjson.dumps(body),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect),
            ) as response:
                raw = await response.read()
                if response.status >= 300:
                    raise from_status(response.status, response.headers, raw)
                return raw, response.headers
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise from_aiohttp(exc, "total") from None


async def open_stream(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: Mapping[str, str],
    timeouts: AttemptTimeouts,
) -> aiohttp.ClientResponse:
    """POST and return a 2xx response whose body (the event stream) is still unread."""
    try:
        async with asyncio.timeout(timeouts.first_byte):
            response = await session.post(
                url,
                data=orjson.dumps(body),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect),
            )
            if response.status >= 300:
                try:
                    raw = await response.read()
                finally:
                    response.release()
                raise from_status(response.status, response.headers, raw)
            return response
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise from_aiohttp(exc, "first_byte") from None
