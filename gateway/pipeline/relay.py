"""Relay an upstream SSE stream to the client event by event, and decide what happens when
it breaks after output has begun: end it with an OpenAI error event, or — when the route
opts in with `resume_streams` — ask another target to continue the partial answer and keep
streaming on the same connection, so the client sees one answer.

A continuation sends the original request plus the partial assistant output as the last
turn: Anthropic continues an assistant prefill natively; OpenAI-wire servers that support
it (vLLM) get `continue_final_message: true, add_generation_prompt: false`. OpenAI's own
API has no prefill, so a continuation there fails and the stream ends with the error event
as it would without resuming. Answers that had begun a tool call are never resumed."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson

from gateway.errors import SpilloverError, StreamInterrupted, UpstreamFailure
from gateway.metrics import GatewayMetrics
from gateway.pipeline.attempt import AttemptRunner
from gateway.pipeline.context import RequestContext
from gateway.pipeline.served import Served
from gateway.providers import finish
from gateway.providers.base import OPENAI, Usage
from policies.route import Route


class ClientStream(Protocol):
    """The client's end of a stream, as the HTTP layer gives it to the relay."""

    async def write(self, chunk: bytes) -> None:
        """Send one SSE event (more follow)."""

    async def disconnected(self) -> None:
        """Return once the client has gone away."""

    async def error(self, exc: SpilloverError) -> None:
        """End the stream with an error event in the client's protocol."""


class PartialAnswer:
    """The assistant text the client has received so far (only parsed when resumable)."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.deltas = 0
        self.resumable = True

    def see(self, event: bytes) -> None:
        if not event.startswith(b"data: {"):
            return
        try:
            choices = orjson.loads(event[6:]).get("choices") or []
            delta = (choices[0].get("delta") or {}) if choices else {}
            if not isinstance(delta, dict):
                raise TypeError
        except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError):
            self.resumable = False  # an event we cannot read: no continuation from it
            return
        if not choices:
            return
        if delta.get("tool_calls") or delta.get("function_call"):
            self.resumable = False
        content = delta.get("content")
        if content:
            self.text.append(content)
            self.deltas += 1

    def continuation(self, body: dict[str, Any]) -> dict[str, Any]:
        out = {
            **body,
            "messages": [*body["messages"], {"role": "assistant", "content": "".join(self.text)}],
        }
        for name in ("max_tokens", "max_completion_tokens"):
            if isinstance(out.get(name), int):
                out[name] = max(1, out[name] - self.deltas)
        return out


def _role_only(event: bytes) -> bool:
    """The opening chunk of a continuation (`role: assistant`, empty content)."""
    if not event.startswith(b"data: {") or b'"role"' not in event:
        return False
    try:
        choices = orjson.loads(event[6:]).get("choices") or []
        delta = choices[0].get("delta") if choices else None
    except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError):
        return False
    return isinstance(delta, dict) and not delta.get("content") and not delta.get("tool_calls")


async def relay(
    ctx: RequestContext,
    route: Route,
    served: Served,
    attempts: AttemptRunner,
    metrics: GatewayMetrics,
    client: ClientStream,
) -> Usage:
    """Forward events until the stream ends; returns the usage of every segment. A watcher
    notices the client leaving and closes whichever upstream stream is current."""
    segments = [served]

    async def close_current() -> None:
        stream = segments[-1].stream
        if stream is not None:
            await stream.aclose()

    watcher = asyncio.create_task(watch_disconnect(ctx, client, close_current, metrics))
    try:
        return await _forward(ctx, route, segments, attempts, metrics, client)
    finally:
        watcher.cancel()
        for segment in segments:
            if segment.stream is not None:
                await segment.stream.aclose()


async def _forward(
    ctx: RequestContext,
    route: Route,
    segments: list[Served],
    attempts: AttemptRunner,
    metrics: GatewayMetrics,
    client: ClientStream,
) -> Usage:
    served = segments[0]
    # Only OpenAI-wire answers can be continued: a continuation is a chat request.
    resumable = served.stream is not None and served.stream.protocol == OPENAI
    partial = (
        PartialAnswer() if route.resume_streams and ctx.endpoint == "chat" and resumable else None
    )
    if partial is not None:
        partial.see(served.first_event)
    usage = Usage()
    current = served
    told = _ToldUsage()  # what the client has been sent of the answer, across segments
    reasons = ctx.outcome.finish_reasons = [] if ctx.traced else None
    if reasons is not None and served.stream is not None:
        finish.see_event(served.stream.protocol, served.first_event, reasons)
    while True:
        assert current.events is not None and current.stream is not None
        relayed = 1  # the segment's first event went out before this loop
        wire = current.stream.protocol
        try:
            async for event in current.events:
                if partial is not None:
                    partial.see(event)
                if reasons is not None:
                    finish.see_event(wire, event, reasons)
                await client.write(told.whole(event))
                relayed += 1
            if ctx.outcome.client_disconnected:  # its upstream closed under it: a cut stream
                ctx.outcome.status = 499
                _segment(ctx, usage, current, _reported_or_counted(ctx, current, relayed, metrics))
                return usage
            _segment(ctx, usage, current, current.stream.usage)
            return usage
        except UpstreamFailure as failure:
            served_part = _reported_or_counted(ctx, current, relayed, metrics)
            _segment(ctx, usage, current, served_part)
            told.before(served_part)
            await current.stream.aclose()
            if ctx.outcome.client_disconnected:
                ctx.outcome.status = 499
                return usage
            resumed = None
            if partial is not None and partial.resumable:
                resumed = await _resume(ctx, route, current, partial, attempts, metrics)
            if resumed is None:
                _interrupted(ctx, current, failure, metrics)
                interrupted = StreamInterrupted(
                    f"upstream stream failed after output began: {failure.message}", failure
                )
                await client.error(interrupted)
                return usage
            if ctx.outcome.resumed_by is None:
                ctx.outcome.segments.append((current.target, dataclasses.replace(served_part)))
            current = resumed
            segments.append(resumed)
            ctx.outcome.resumed_by = resumed.target
            if not _role_only(resumed.first_event):
                partial.see(resumed.first_event)  # type: ignore[union-attr]
                await client.write(told.whole(resumed.first_event))


async def _resume(
    ctx: RequestContext,
    route: Route,
    broken: Served,
    partial: PartialAnswer,
    attempts: AttemptRunner,
    metrics: GatewayMetrics,
) -> Served | None:
    others = [t for t in route.targets if t != broken.target]
    if not others:
        return None
    body = partial.continuation(ctx.body)
    try:
        resumed = await attempts.run(ctx, route, others, body=body, continuation=True)
    except SpilloverError:
        return None
    ctx.outcome.resumed = True
    metrics.child(
        metrics.streams_resumed, ctx.route_name, broken.target.provider, resumed.target.provider
    ).inc()
    await attempts.outcomes.succeeded(ctx, route, resumed)
    return resumed


def _interrupted(
    ctx: RequestContext, current: Served, failure: UpstreamFailure, metrics: GatewayMetrics
) -> None:
    ctx.outcome.status = 502
    ctx.outcome.error_class = StreamInterrupted.error_class
    metrics.child(metrics.stream_interrupted, ctx.route_name, current.target.provider).inc()


def _reported_or_counted(
    ctx: RequestContext, segment: Served, relayed: int, metrics: GatewayMetrics
) -> Usage:
    """A cut stream's usage: the upstream's own report when it sent one; otherwise the
    gateway's count — the prompt as tokenised when admitted, an output token per event
    relayed after the first (one per chunk on OpenAI-wire streams) — marked as estimated.
    The provider bills what it generated before the cut: never silently $0."""
    assert segment.stream is not None
    reported = segment.stream.usage
    # More than one output token is a final count; Anthropic's message_start says 1 up front.
    if reported.completion_tokens > 1:
        return reported
    ctx.outcome.usage_estimated = True
    metrics.child(metrics.usage_estimated, ctx.route_name, segment.target.provider).inc()
    return dataclasses.replace(
        reported,
        prompt_tokens=reported.prompt_tokens or ctx.prompt_tokens(segment.target.model),
        completion_tokens=max(reported.completion_tokens, relayed - 1),
    )


def _segment(ctx: RequestContext, total: Usage, segment: Served, part: Usage) -> None:
    """One upstream's share of the answer. A resumed answer keeps each share, to bill it at
    its own upstream's price (`ctx.outcome.segments`); the first is kept when the resume begins."""
    _add(total, part)
    if ctx.outcome.resumed_by is not None:
        ctx.outcome.segments.append((segment.target, dataclasses.replace(part)))


class _ToldUsage:
    """After a resume, the usage the client is told is the whole answer's: the prompt once
    (the first segment's) and every completion token delivered, not the continuation's own
    count (whose prompt holds the partial answer). Until a resume, events pass untouched."""

    def __init__(self) -> None:
        self._first: Usage | None = None
        self._delivered = 0

    def before(self, part: Usage) -> None:
        if self._first is None:
            self._first = part
        self._delivered += part.completion_tokens

    def whole(self, event: bytes) -> bytes:
        first = self._first
        if first is None or b'"usage"' not in event or not event.startswith(b"data: {"):
            return event
        try:
            payload = orjson.loads(event[6:])
            usage = payload.get("usage")
        except (orjson.JSONDecodeError, AttributeError):
            return event
        if not isinstance(usage, dict):
            return event
        completion = self._delivered + int(usage.get("completion_tokens") or 0)
        usage["prompt_tokens"] = first.prompt_tokens
        usage["completion_tokens"] = completion
        usage["total_tokens"] = first.prompt_tokens + completion
        # The prompt's cache reads and writes are the first segment's too.
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) or first.cached_tokens:
            usage["prompt_tokens_details"] = {
                **(details if isinstance(details, dict) else {}),
                "cached_tokens": first.cached_tokens,
            }
        if "cache_creation_input_tokens" in usage or first.cache_write_tokens:
            usage["cache_creation_input_tokens"] = first.cache_write_tokens
        return b"data: " + orjson.dumps(payload) + b"\n\n"


def _add(total: Usage, part: Usage) -> None:
    total.prompt_tokens += part.prompt_tokens
    total.completion_tokens += part.completion_tokens
    total.cached_tokens += part.cached_tokens
    total.cache_write_tokens += part.cache_write_tokens
    total.reasoning_tokens += part.reasoning_tokens


async def watch_disconnect(
    ctx: RequestContext,
    client: ClientStream,
    close: Callable[[], Awaitable[None]],
    metrics: GatewayMetrics,
) -> None:
    """Notice the client leaving mid-stream and close the upstream at once."""
    await client.disconnected()
    ctx.outcome.client_disconnected = True
    metrics.child(metrics.client_disconnects, ctx.route_name).inc()
    await close()
