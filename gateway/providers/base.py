"""The provider contract: one async method, `send`, that returns a whole response or a
stream of SSE events, and raises only `gateway.errors.UpstreamFailure`.

Answers are OpenAI-wire (`protocol = "openai"`) unless the call carried the client's own
body in a protocol the provider speaks natively (`UpstreamCall.native`, a provider's
`native_protocols`): then the answer is in that protocol, its bytes as the upstream sent
them, and says so in its `protocol`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.upstream.pool import PoolState
from policies.pool import Priority
from policies.schema import WireProtocol
from policies.schema_base import Endpoint

OPENAI: WireProtocol = "openai"
ANTHROPIC: WireProtocol = "anthropic"
RESPONSES: WireProtocol = "responses"


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_openai(cls, usage: Mapping[str, Any]) -> Usage:
        prompt_details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return cls(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(prompt_details.get("cached_tokens") or 0),
            cache_write_tokens=int(usage.get("cache_creation_input_tokens") or 0),
            reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0),
        )


@dataclass(frozen=True, slots=True)
class AttemptTimeouts:
    """Seconds for each phase of one attempt, already cut from the request's deadline."""

    connect: float
    first_byte: float
    idle: float
    total: float


@dataclass(frozen=True, slots=True)
class CacheHint:
    """What the shape stage asks of the provider's prompt cache (`providers/cache_hints.py`)."""

    anthropic_ttl: str | None = None  # "5m" or "1h"; None: no breakpoints
    anthropic_min_tokens: int = 1024
    openai_key: str | None = None  # prompt_cache_key, when the client set none


@dataclass(frozen=True, slots=True)
class NativeRequest:
    """The client's body as sent, for a target that speaks the client's protocol: only the
    model is replaced. `headers` are the few client headers that protocol forwards."""

    protocol: WireProtocol
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class UpstreamCall:
    endpoint: Endpoint
    body: dict[str, Any]
    model: str
    stream: bool
    client_wants_usage: bool
    request_id: str
    timeouts: AttemptTimeouts
    # The body's last turn is a partial assistant answer to be continued, not answered.
    continuation: bool = False
    # For the self-hosted pool: the request's size in tokens, its priority, and whether its
    # route lets the pool cap max_tokens when full.
    prompt_tokens: int = 0
    output_tokens: int = 0
    priority: Priority = "standard"
    allow_cap_context: bool = False
    cache_hint: CacheHint | None = None
    # For drills: the route, the request's x-spillover-drill scope, and the faults injected
    # into it (shared with the request's context, so the ledger row can say so).
    route: str = ""
    drill: str | None = None
    faults: list[str] = field(default_factory=list)
    # The client's own body, offered to a provider whose native_protocols include its
    # protocol; `body` stays the OpenAI chat form every other provider reads.
    native: NativeRequest | None = None


@dataclass(slots=True)
class UpstreamResponse:
    body: bytes
    usage: Usage
    headers: Mapping[str, str] = field(default_factory=dict)
    protocol: WireProtocol = OPENAI
    # The body as an object, when whoever made the body had it (an adapter that read it for
    # its usage, or built it translating); else read once by the first to ask
    # (`upstream_errors.answer_object`). Never changed once set: the body is the answer.
    parsed: dict[str, Any] | None = None


class UpstreamStream(ABC):
    """OpenAI-wire SSE events (`data: …\\n\\n`, the final `data: [DONE]\\n\\n` included), exactly
    as the client asked to see them. `usage` is filled in as the stream goes."""

    usage: Usage
    headers: Mapping[str, str]
    protocol: WireProtocol = OPENAI

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    @abstractmethod
    async def aclose(self) -> None:
        """Close the upstream connection; safe to call more than once."""


class WrappedStream(UpstreamStream):
    """Another stream's events, passed through `_events` (which a subclass writes); usage
    and headers are the inner stream's."""

    def __init__(self, inner: UpstreamStream) -> None:
        self._inner = inner
        self.headers = inner.headers
        self.protocol = inner.protocol

    @property
    def usage(self) -> Usage:  # type: ignore[override]
        return self._inner.usage

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    @abstractmethod
    def _events(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None:
        await self._inner.aclose()


class Provider(ABC):
    name: str
    supports: frozenset[Endpoint]
    native_protocols: frozenset[WireProtocol] = frozenset()  # client protocols taken as sent
    address: str = ""  # the upstream's host, for traces (server.address)

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open pools; called once at startup."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Close pools; called once at shutdown."""

    def adopt(self, previous: Provider) -> None:  # noqa: B027 - optional hook
        """Take over what the same-named provider of the config before a reload learnt (a
        pool's replicas, warm and in rotation); called before `start`."""

    def unwrapped(self) -> Provider:
        """The adapter itself, when this one wraps another (a drill's fault injector)."""
        return self

    def connections(self) -> list[PoolState]:
        """Its connection pools to upstreams, for the metrics (none: it keeps none)."""
        return []

    @abstractmethod
    async def send(self, call: UpstreamCall) -> UpstreamResponse | UpstreamStream: ...
