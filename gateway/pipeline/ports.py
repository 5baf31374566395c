"""What the pipeline's front door takes from a transport: the request as it arrived
(`Inbound`) and a way to answer it (`Reply`). The HTTP layer gives both over ASGI; a test
or another server can give them over anything, so nothing past the door knows ASGI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

Headers = Mapping[bytes, bytes]  # lower-case names, as the HTTP server gives them
HeaderList = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Inbound:
    """One request as the transport received it; the body is read only when asked for.
    Not changed once made (a frozen dataclass costs the hot path half a microsecond)."""

    method: str
    path: str
    headers: Headers
    query: bytes
    # The whole body within `limit` bytes, or None when the client left while sending it;
    # PayloadTooLarge past the limit.
    read_body: Callable[[int], Awaitable[bytes | None]]


class Reply(Protocol):
    """The client's end: a status and headers, then the body in one or more parts."""

    async def start(self, status: int, headers: HeaderList) -> None: ...

    async def write(self, chunk: bytes) -> None:
        """One part of the body; more follow."""

    async def end(self, chunk: bytes = b"") -> None:
        """The last part of the body."""

    async def disconnected(self) -> None:
        """Return once the client has gone away."""


# The heavy lane, when one runs: serves a request whose body is `body` whole, and keeps its
# row; raises a SpilloverError when it cannot.
HandOff = Callable[[bytes], Awaitable[None]]
