"""Where an upstream's host is: the system resolver's answers, kept a short while so that a
burst of new connections to one upstream asks it once."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

AddrInfo = tuple[Any, Any, int, str, tuple[Any, ...]]
Resolve = Callable[[str, int], Awaitable[list[AddrInfo]]]


class CachingResolver:
    """`getaddrinfo`, its answers kept `ttl_s` per host and port."""

    def __init__(self, ttl_s: float = 60.0) -> None:
        self._ttl_s = ttl_s
        self._known: dict[tuple[str, int], tuple[float, list[AddrInfo]]] = {}

    async def __call__(self, host: str, port: int) -> list[AddrInfo]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        known = self._known.get((host, port))
        if known is not None and known[0] > now:
            return known[1]
        infos = await self.lookup(host, port)
        if len(self._known) >= 1024:  # hosts come from the config: a handful
            self._known.clear()
        self._known[(host, port)] = (now + self._ttl_s, infos)
        return infos

    async def lookup(self, host: str, port: int) -> list[AddrInfo]:
        """The system resolver, asked."""
        loop = asyncio.get_running_loop()
        return list(await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM))
