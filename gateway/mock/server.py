"""`spillover mock-provider`: an aiohttp server that answers like OpenAI or Anthropic, and
misbehaves on demand (errors with the real headers, latency, hangs, resets, cut streams).

Knobs are set at start (CLI flags) and changed live with `POST /_mock/config`; the last
requests it received are at `GET /_mock/requests` so tests can see what the gateway sent."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import orjson
from aiohttp import web

from gateway.mock import content
from gateway.mock.cache import CacheUsage, PrefixCache, patch_anthropic, patch_openai

Wire = str  # "openai" | "anthropic"


@dataclass
class Knobs:
    latency_ms: float = 0.0  # before the answer's headers
    ttft_ms: float = 0.0  # streams: before the first event
    tokens_per_s: float = 0.0  # streams: event pacing (0 = as fast as possible)
    output_tokens: int = 16
    error_rate: float = 0.0
    error_status: int = 500
    error_code: str = ""  # OpenAI wire: the error's `code` (e.g. context_length_exceeded)
    retry_after_s: float = 1.0
    reset_rate: float = 0.0  # drop the connection without an answer
    hang_rate: float = 0.0  # accept and never answer
    cut_after: int = 0  # streams: drop the connection after this many events (0 = never)
    # Rate-limit headroom reported on successful answers (-1: no such headers).
    ratelimit_remaining: int = -1
    ratelimit_reset_s: float = 1.0
    # A Set-Cookie on every answer, as a CDN in front of a hosted API sends one.
    set_cookie: str = ""
    embedding_dims: int = 8
    seed: int = 0
    # Prompt caching (gateway/mock/cache.py), and what each 1,000 uncached prompt tokens add
    # to the time to the answer or first event (prefill).
    prompt_cache: bool = True
    uncached_ms_per_1k_tokens: float = 0.0
    anthropic_min_cache_tokens: int = 1024


@dataclass
class MockState:
    wire: Wire
    knobs: Knobs
    rng: random.Random
    received: deque[dict[str, Any]]
    counts: dict[str, int]
    cache: PrefixCache


def _roll(state: MockState, rate: float) -> bool:
    return rate > 0 and state.rng.random() < rate


def _error_payload(wire: Wire, status: int, code: str = "") -> dict[str, Any]:
    if wire == "anthropic":
        kind = {
            429: "rate_limit_error",
            529: "overloaded_error",
            401: "authentication_error",
            400: "invalid_request_error",
            404: "not_found_error",
            413: "request_too_large",
        }.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": f"mock {kind}"}}
    kind = {429: "rate_limit_exceeded", 400: "invalid_request_error", 401: "invalid_api_key"}.get(
        status, "server_error"
    )
    return {
        "error": {
            "message": f"mock error {status}",
            "type": kind,
            "param": None,
            "code": code or kind,
        }
    }


def _error_response(state: MockState, status: int) -> web.Response:
    headers = {"content-type": "application/json"}
    if status in (429, 503, 529):
        headers["retry-after"] = f"{state.knobs.retry_after_s:g}"
    if status == 429:
        if state.wire == "anthropic":
            headers["anthropic-ratelimit-requests-limit"] = "50"
            headers["anthropic-ratelimit-requests-remaining"] = "0"
            headers["anthropic-ratelimit-requests-reset"] = "2030-01-01T00:00:00Z"
        else:
            headers["retry-after-ms"] = f"{state.knobs.retry_after_s * 1000:g}"
            headers["x-ratelimit-limit-requests"] = "60"
            headers["x-ratelimit-remaining-requests"] = "0"
            headers["x-ratelimit-reset-requests"] = f"{state.knobs.retry_after_s:g}s"
    return web.Response(
        status=status,
        body=orjson.dumps(_error_payload(state.wire, status, state.knobs.error_code)),
        headers=headers,
    )


async def _faults(state: MockState, request: web.Request) -> web.StreamResponse | None:
    """Apply the request-level knobs; returns a response to send instead, if any."""
    knobs = state.knobs
    if knobs.latency_ms:
        await asyncio.sleep(knobs.latency_ms / 1000)
    if _roll(state, knobs.hang_rate):
        state.counts["hangs"] = state.counts.get("hangs", 0) + 1
        await _until_client_leaves(request)
        state.counts["hangs_released"] = state.counts.get("hangs_released", 0) + 1
        return web.Response(status=500)
    if _roll(state, knobs.reset_rate):
        state.counts["resets"] = state.counts.get("resets", 0) + 1
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)
    if _roll(state, knobs.error_rate):
        state.counts["errors"] = state.counts.get("errors", 0) + 1
        return _error_response(state, knobs.error_status)
    return None


async def _until_client_leaves(request: web.Request, limit_s: float = 3600) -> None:
    """Hang like a stuck upstream, but let go once the client has given up."""
    for _ in range(int(limit_s / 0.05)):
        if request.transport is None or request.transport.is_closing():
            break
        await asyncio.sleep(0.05)


async def _read(state: MockState, request: web.Request) -> dict[str, Any]:
    body = orjson.loads(await request.read())
    state.received.append(
        {
            "t": time.time(),
            "path": request.path,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body,
        }
    )
    state.counts[request.path] = state.counts.get(request.path, 0) + 1
    return body  # type: ignore[no-any-return]


async def _stream(
    state: MockState, request: web.Request, events: list[bytes], prefill_s: float = 0.0
) -> web.StreamResponse:
    knobs = state.knobs
    response = web.StreamResponse(
        headers={
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            **_answer_headers(state),
        }
    )
    await response.prepare(request)
    if knobs.ttft_ms or prefill_s:
        await asyncio.sleep(knobs.ttft_ms / 1000 + prefill_s)
    gap = 1 / knobs.tokens_per_s if knobs.tokens_per_s else 0.0
    for i, event in enumerate(events):
        if knobs.cut_after and i >= knobs.cut_after:
            state.counts["cuts"] = state.counts.get("cuts", 0) + 1
            if request.transport is not None:
                request.transport.abort()
            return response
        if i and gap:
            await asyncio.sleep(gap)
        await response.write(event)
    await response.write_eof()
    return response


def _answer_headers(state: MockState) -> dict[str, str]:
    knobs = state.knobs
    cookie = {"set-cookie": knobs.set_cookie} if knobs.set_cookie else {}
    return {**cookie, **_headroom(knobs, state.wire)}


def _headroom(knobs: Knobs, wire: Wire) -> dict[str, str]:
    if knobs.ratelimit_remaining < 0:
        return {}
    if wire == "anthropic":
        reset = time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + knobs.ratelimit_reset_s)
        )
        return {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": str(knobs.ratelimit_remaining),
            "anthropic-ratelimit-requests-reset": reset,
        }
    return {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": str(knobs.ratelimit_remaining),
        "x-ratelimit-reset-requests": f"{knobs.ratelimit_reset_s:g}s",
    }


def _sse(chunks: list[dict[str, Any]]) -> list[bytes]:
    return [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


def build_app(wire: Wire, knobs: Knobs) -> web.Application:
    state = MockState(wire, knobs, random.Random(knobs.seed), deque(maxlen=200), {}, PrefixCache())
    app = web.Application(client_max_size=64 * 1024 * 1024)
    _Mock(wire, state).route(app)
    return app


class _Mock:
    """The mock's handlers over its state: the wire endpoints and the /_mock controls."""

    def __init__(self, wire: Wire, state: MockState) -> None:
        self.wire = wire
        self.state = state

    def route(self, app: web.Application) -> None:
        if self.wire == "anthropic":
            app.router.add_post(
                "/v1/messages",
                self.endpoint(content.anthropic_message, self.anthropic_sse, cached=True),
            )
        else:
            app.router.add_post(
                "/v1/chat/completions",
                self.endpoint(content.openai_chat, self.openai_chat_sse, cached=True),
            )
            app.router.add_post(
                "/v1/responses",
                self.endpoint(content.responses_answer, self.responses_sse),
            )
            app.router.add_post(
                "/v1/completions",
                self.endpoint(
                    content.openai_completion,
                    lambda b, n, _: _sse(content.openai_completion_chunks(b, n)),
                ),
            )
            app.router.add_post(
                "/v1/embeddings",
                self.endpoint(
                    lambda b, n: content.embeddings_response(b, self.state.knobs.embedding_dims),
                    None,
                ),
            )
            app.router.add_get("/v1/models", self.models)
        app.router.add_get("/_mock/config", self.get_config)
        app.router.add_post("/_mock/config", self.set_config)
        app.router.add_get("/_mock/requests", self.get_requests)
        app.router.add_post("/_mock/reset", self.reset)
        app.router.add_get("/health", _ok)

    def endpoint(
        self,
        whole: Callable[[dict[str, Any], int], Any],
        events: Callable[[dict[str, Any], int, CacheUsage | None], list[bytes]] | None,
        cached: bool = False,
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A handler: record the request, apply the fault knobs, look the prompt up in the
        cache, then answer whole or as a stream of pre-rendered events."""

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await _read(self.state, request)
            invalid = _invalid(self.wire, body)
            if invalid is not None:
                return invalid
            fault = await _faults(self.state, request)
            if fault is not None:
                return fault
            n = _n_tokens(self.state, body)
            cache = _cache_usage(self.state, body) if cached else None
            prefill_s = (
                cache.uncached / 1000 * self.state.knobs.uncached_ms_per_1k_tokens / 1000
                if cache
                else 0.0
            )
            if body.get("stream") and events is not None:
                return await _stream(self.state, request, events(body, n, cache), prefill_s)
            answer = whole(body, n)
            if cache is not None:
                if self.wire == "anthropic":
                    patch_anthropic(answer["usage"], cache)
                else:
                    patch_openai(answer, cache)
            if prefill_s:
                await asyncio.sleep(prefill_s)
            return web.json_response(answer, dumps=_dumps, headers=_answer_headers(self.state))

        return handle

    def anthropic_sse(self, body: dict[str, Any], n: int, cache: CacheUsage | None) -> list[bytes]:
        events = content.anthropic_events(body, n)
        if cache is not None:
            patch_anthropic(events[0][1]["message"]["usage"], cache)
        return [
            f"event: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"
            for name, data in events
        ]

    def responses_sse(self, body: dict[str, Any], n: int, cache: CacheUsage | None) -> list[bytes]:
        return [
            f"event: {name}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"
            for name, data in content.responses_events(body, n)
        ]

    def openai_chat_sse(
        self, body: dict[str, Any], n: int, cache: CacheUsage | None
    ) -> list[bytes]:
        chunks = content.openai_chat_chunks(body, n)
        if cache is not None:
            for chunk in chunks:
                patch_openai(chunk, cache)
        return _sse(chunks)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "mock-gpt", "object": "model", "created": 0, "owned_by": "mock"}],
            }
        )

    async def get_config(self, request: web.Request) -> web.Response:
        return web.json_response(asdict(self.state.knobs))

    async def set_config(self, request: web.Request) -> web.Response:
        changes = orjson.loads(await request.read() or b"{}")
        names = {f.name for f in fields(Knobs)}
        unknown = set(changes) - names
        if unknown:
            return web.json_response({"error": f"unknown knobs: {sorted(unknown)}"}, status=400)
        for name, value in changes.items():
            setattr(self.state.knobs, name, type(getattr(self.state.knobs, name))(value))
        if "seed" in changes:
            self.state.rng.seed(self.state.knobs.seed)
        return web.json_response(asdict(self.state.knobs))

    async def get_requests(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"counts": self.state.counts, "requests": list(self.state.received)}, dumps=_dumps
        )

    async def reset(self, request: web.Request) -> web.Response:
        self.state.received.clear()
        self.state.counts.clear()
        self.state.cache.clear()
        return web.json_response({"ok": True})


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


_MAX_DIMENSIONS = 3072  # text-embedding-3-large's; OpenAI refuses more with a 400


def _invalid(wire: Wire, body: dict[str, Any]) -> web.Response | None:
    """Anthropic insists on max_tokens and a messages list; OpenAI refuses embeddings of
    more dimensions than its models have; the mock does too."""
    if wire != "anthropic":
        dimensions = body.get("dimensions")
        if isinstance(dimensions, int) and dimensions > _MAX_DIMENSIONS:
            error = {"message": "dimensions is too large", "type": "invalid_request_error",
                     "param": "dimensions", "code": None}  # fmt: skip
            return web.json_response({"error": error}, status=400)
        return None
    if "max_tokens" in body and isinstance(body.get("messages"), list):
        return None
    error = {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    return web.json_response({"type": "error", "error": error}, status=400)


def _cache_usage(state: MockState, body: dict[str, Any]) -> CacheUsage | None:
    if not state.knobs.prompt_cache:
        return None
    if state.wire == "anthropic":
        state.cache.anthropic_min_tokens = state.knobs.anthropic_min_cache_tokens
        return state.cache.anthropic(body)
    return state.cache.openai(body)


def _n_tokens(state: MockState, body: dict[str, Any]) -> int:
    """Words still to say: the answer has `output_tokens` words in all, so a continuation
    says only the rest; `max_tokens` caps it."""
    limit = (
        body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
    )
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    n = max(0, state.knobs.output_tokens - content.continued_from(body, messages or []))
    return min(n, int(limit)) if limit else n


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def run(wire: Wire, host: str, port: int, knobs: Knobs) -> None:
    web.run_app(
        build_app(wire, knobs),
        host=host,
        port=port,
        print=None,
        access_log=None,
        handle_signals=True,
    )
