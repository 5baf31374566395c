"""The gateway in this process: the real ASGI app on a config, with scripted fake providers
behind the one-method provider contract, reached through `httpx.ASGITransport`. The
pipeline is exercised in milliseconds; the subprocess suite stays for end to end."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from fallback_engine.metrics import PoolMetrics
from gateway.assembly import build_core, build_generation, close_generation
from gateway.http.app import Gateway
from gateway.pipeline.front import Pipeline
from gateway.pipeline.ports import Inbound
from gateway.providers import ProviderConfig
from gateway.providers.base import (
    Provider,
    UpstreamCall,
    UpstreamResponse,
    UpstreamStream,
    Usage,
)
from policies.loader import parse_config
from policies.schema_base import Endpoint

Script = UpstreamResponse | UpstreamStream | Exception | Callable[[UpstreamCall], Any]


def completion(
    text: str = "hello", prompt_tokens: int = 7, completion_tokens: int = 2
) -> UpstreamResponse:
    usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return UpstreamResponse(orjson.dumps(body), usage)


class FakeStream(UpstreamStream):
    """OpenAI-wire SSE events for `words`, then the usage chunk and [DONE]."""

    def __init__(self, words: Iterable[str], prompt_tokens: int = 5) -> None:
        self.words = list(words)
        self.usage = Usage()
        self.headers: dict[str, str] = {}
        self._prompt_tokens = prompt_tokens
        self.closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        def event(delta: dict[str, Any]) -> bytes:
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "fake",
                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
            }
            return b"data: " + orjson.dumps(chunk) + b"\n\n"

        yield event({"role": "assistant", "content": ""})
        for word in self.words:
            yield event({"content": word})
        self.usage = Usage(prompt_tokens=self._prompt_tokens, completion_tokens=len(self.words))
        yield b"data: [DONE]\n\n"

    async def aclose(self) -> None:
        self.closed = True


@dataclass
class FakeProvider(Provider):
    """Answers each call with the next scripted item (the last one repeats); records calls."""

    name: str
    script: list[Script] = field(default_factory=lambda: [completion()])
    supports: frozenset[Endpoint] = frozenset({"chat", "completions", "embeddings"})
    calls: list[UpstreamCall] = field(default_factory=list)

    async def send(self, call: UpstreamCall) -> UpstreamResponse | UpstreamStream:
        self.calls.append(call)
        item = self.script[min(len(self.calls), len(self.script)) - 1]
        if callable(item) and not isinstance(item, (Exception, UpstreamResponse, UpstreamStream)):
            item = item(call)
        if isinstance(item, Exception):
            raise item
        return item


@dataclass
class InProcess:
    client: httpx.AsyncClient
    gateway: Gateway
    ledger_path: Path

    def rows(self) -> list[dict[str, Any]]:
        """Ledger rows; call after the `running` block has ended (the ledger is flushed)."""
        return ledger_rows(self.ledger_path)


def ledger_rows(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM spillover_ledger ORDER BY ts")]


KEY = "sk-component-key"


def config_text(
    ledger: Path, routes: str, providers: Iterable[str], extra: dict[str, str] | None = None
) -> str:
    declared = "\n".join(
        f"  {name}: {{kind: openai, api_base: 'http://fake.invalid/v1'"
        f"{', ' + extra[name] if extra and name in extra else ''}}}"
        for name in providers
    )
    return (
        f"ledger: {{url: 'sqlite:///{ledger}', flush_ms: 10}}\n"
        f"providers:\n{declared}\n"
        f"routes:\n{routes}\n"
        f"keys:\n  - {{name: app, team: qa, key: {KEY}}}\n"
    )


@asynccontextmanager
async def running(
    tmp: Path,
    routes: str,
    providers: dict[str, FakeProvider],
    provider_yaml: dict[str, str] | None = None,
    span_exporter: Any = None,
) -> AsyncIterator[InProcess]:
    """`provider_yaml`: more flow-style YAML for a provider's entry (e.g. its prices);
    `span_exporter`: trace every request into this OpenTelemetry SDK exporter."""
    ledger = tmp / "ledger.sqlite"
    text = config_text(ledger, routes, providers, provider_yaml)
    config = parse_config(text, "component.yaml", {})

    def build(name: str, _config: ProviderConfig, _pool: PoolMetrics | None) -> Provider:
        return providers[name]

    gateway = Gateway(config, build_provider=build, span_exporter=span_exporter)
    await gateway.start()
    transport = httpx.ASGITransport(app=gateway)
    headers = {"Authorization": f"Bearer {KEY}"}
    client = httpx.AsyncClient(transport=transport, base_url="http://gateway", headers=headers)
    world = InProcess(client, gateway, ledger)
    try:
        yield world
    finally:
        await client.aclose()
        await gateway.stop()


@dataclass
class RecordingReply:
    """The pipeline's `Reply`, kept: what a client would have received, with no ASGI."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    parts: list[bytes] = field(default_factory=list)
    ended: bool = False

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        assert self.status == 0, "an answer started twice"
        self.status = status
        self.headers = {k.decode(): v.decode() for k, v in headers}

    async def write(self, chunk: bytes) -> None:
        assert self.status and not self.ended
        self.parts.append(chunk)

    async def end(self, chunk: bytes = b"") -> None:
        assert self.status and not self.ended
        self.parts.append(chunk)
        self.ended = True

    async def disconnected(self) -> None:
        await asyncio.Event().wait()  # this client never leaves

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)

    def json(self) -> Any:
        return orjson.loads(self.body)


def inbound(path: str, body: dict[str, Any], more: dict[bytes, bytes] | None = None) -> Inbound:
    """A POST with the component key (and `more` headers), as a transport would hand it to
    the pipeline."""
    raw = orjson.dumps(body)

    async def read_body(limit: int) -> bytes:
        assert len(raw) <= limit
        return raw

    headers = {b"authorization": f"Bearer {KEY}".encode(), b"content-type": b"application/json"}
    headers.update(more or {})
    return Inbound("POST", path, headers, b"", read_body)


@dataclass
class PipelineUnderTest:
    pipeline: Pipeline
    ledger_path: Path

    def rows(self) -> list[dict[str, Any]]:
        """Ledger rows; call after the `serving_pipeline` block has ended."""
        return ledger_rows(self.ledger_path)


@asynccontextmanager
async def serving_pipeline(
    tmp: Path, routes: str, providers: dict[str, FakeProvider]
) -> AsyncIterator[PipelineUnderTest]:
    """The pipeline of one config generation, wired as the gateway wires it (assembly),
    with no HTTP layer in front: its front door is called directly."""
    ledger = tmp / "ledger.sqlite"
    config = parse_config(config_text(ledger, routes, providers), "component.yaml", {})
    core = build_core(config, provider_factory=lambda name, _c, _p: providers[name])
    await core.start()
    generation = await build_generation(core, config)
    core.configure(config, generation)
    try:
        yield PipelineUnderTest(generation.pipeline, ledger)
    finally:
        await close_generation(generation, 0)
        await core.close()
