"""What a successful attempt hands on: the target that answered and its answer — whole, or a
stream already read up to its first event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gateway.providers.base import UpstreamResponse, UpstreamStream
from policies.route import Target


@dataclass(slots=True)
class Served:
    target: Target
    response: UpstreamResponse | None = None
    stream: UpstreamStream | None = None
    events: AsyncIterator[bytes] | None = None
    first_event: bytes = b""
    started: float = 0.0
    elapsed: float = 0.0
    # What of the client's request this target was served without (route `untranslatable:
    # drop`); empty when nothing was left out.
    dropped: list[str] = field(default_factory=list)
