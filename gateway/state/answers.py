"""Where the response cache keeps answers: this process's memory (least recently used out
first, bounded by bytes) or Redis, shared by every replica (compressed, each entry expiring
by itself). Redis away is a miss and a skipped store, never an error. Keys are
`<tenant>:<route>:<digest>`: a purge by team or route is a prefix."""

from __future__ import annotations

import logging
import time
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    from gateway.state.shared import SharedRedis

log = logging.getLogger("spillover.cache")


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """A whole answer as its upstream gave it, and what it cost then."""

    protocol: str  # the upstream wire `body` is in
    body: bytes
    provider: str
    model: str
    usage: dict[str, int]
    cost_micro_usd: int | None
    stored_at: float

    def pack(self) -> bytes:
        head = {k: v for k, v in asdict(self).items() if k != "body"}
        return orjson.dumps(head) + b"\n" + self.body

    @classmethod
    def unpack(cls, data: bytes) -> StoredAnswer:
        head, _, body = data.partition(b"\n")
        return cls(body=body, **orjson.loads(head))

    @property
    def size(self) -> int:
        return len(self.body) + 256


class AnswerStore(Protocol):
    backend: str

    async def get(self, key: str) -> StoredAnswer | None: ...

    async def put(self, key: str, answer: StoredAnswer, ttl_s: float) -> None: ...

    async def purge(self, prefix: str) -> int:
        """Remove every entry whose key starts with `prefix`; how many went."""

    def held(self) -> tuple[int, int]:
        """Entries and bytes held here (-1, -1: not known here: Redis)."""

    async def close(self) -> None: ...


class MemoryAnswers:
    backend = "memory"

    def __init__(self, max_bytes: int, clock: Any = time.time) -> None:
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[float, StoredAnswer]] = OrderedDict()
        self._bytes = 0
        self._clock = clock

    async def get(self, key: str) -> StoredAnswer | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires_at, answer = found
        if self._clock() >= expires_at:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return answer

    async def put(self, key: str, answer: StoredAnswer, ttl_s: float) -> None:
        if answer.size > self._max_bytes:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (self._clock() + ttl_s, answer)
        self._bytes += answer.size
        while self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))

    async def purge(self, prefix: str) -> int:
        gone = [k for k in self._entries if k.startswith(prefix)]
        for key in gone:
            self._drop(key)
        return len(gone)

    def held(self) -> tuple[int, int]:
        return len(self._entries), self._bytes

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _drop(self, key: str) -> None:
        _, answer = self._entries.pop(key)
        self._bytes -= answer.size


class RedisAnswers:
    backend = "redis"

    def __init__(self, shared: SharedRedis) -> None:
        self._shared = shared
        self._client = shared.binary()
        self._prefix = shared.prefix + "answers:"

    async def get(self, key: str) -> StoredAnswer | None:
        from redis.exceptions import RedisError

        if not self._shared.available:  # known away: no request waits for its timeout
            return None
        try:
            data = await self._client.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            self._shared.lost(exc)
            return None
        if not isinstance(data, bytes):
            return None
        try:
            return StoredAnswer.unpack(zlib.decompress(data))
        except (zlib.error, ValueError, TypeError):
            log.warning("response cache: an unreadable entry in Redis, ignored")
            return None

    async def put(self, key: str, answer: StoredAnswer, ttl_s: float) -> None:
        from redis.exceptions import RedisError

        if not self._shared.available:
            return
        try:
            await self._client.set(
                self._prefix + key, zlib.compress(answer.pack(), 1), px=int(ttl_s * 1000)
            )
        except (RedisError, OSError) as exc:
            self._shared.lost(exc)

    async def purge(self, prefix: str) -> int:
        from redis.exceptions import RedisError

        gone = 0
        try:
            async for found in self._client.scan_iter(match=_glob(self._prefix + prefix) + "*"):
                gone += await self._client.delete(found)
        except (RedisError, OSError) as exc:
            self._shared.lost(exc)
        return gone

    def held(self) -> tuple[int, int]:
        return -1, -1

    async def close(self) -> None:
        await self._client.aclose()


def _glob(text: str) -> str:
    """`text` matched literally in a Redis pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
