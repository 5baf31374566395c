"""The request's path as calls: one request per endpoint through the gateway's ASGI app (a
canned upstream, no sockets) under a profiler hook that sees every Python call. Counts the
frames entered in our own code (gateway/, policies/, fallback_engine/; a coroutine resumed
counts again), the distinct functions among them, and prints the path itself — the calls
down to `--depth` levels below the app, in order, repeats folded.

    python -m bench.call_trace                  # the table
    python -m bench.call_trace --path chat      # and the path of one endpoint
    python -m bench.call_trace --json out.json  # the figures, for comparing two commits

It uses only the app's public constructor (`Gateway(config, build_provider=...)`), so the
same file measures an older commit checked out beside this one."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from gateway.http.app import Gateway
from gateway.providers.base import (
    Provider,
    UpstreamCall,
    UpstreamResponse,
    UpstreamStream,
    Usage,
)
from policies.loader import parse_config

ROOT = Path(__file__).resolve().parents[1]
OURS = tuple(str(ROOT / part) + "/" for part in ("gateway", "policies", "fallback_engine"))
KEY = "sk-trace"
USER = [{"role": "user", "content": "Say hello to the trace."}]
REQUESTS: dict[str, tuple[str, dict[str, Any]]] = {
    "chat": ("/v1/chat/completions", {"model": "m", "messages": USER, "max_tokens": 16}),
    "chat stream": (
        "/v1/chat/completions",
        {"model": "m", "messages": USER, "max_tokens": 16, "stream": True},
    ),
    "messages": ("/v1/messages", {"model": "m", "messages": USER, "max_tokens": 16}),
    "responses": ("/v1/responses", {"model": "m", "input": "Say hello.", "store": False}),
}
ANSWER = orjson.dumps(
    {"id": "chatcmpl-trace", "object": "chat.completion", "created": 0, "model": "m",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello."},
                  "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}}
)  # fmt: skip


class CannedStream(UpstreamStream):
    def __init__(self) -> None:
        self.usage = Usage()
        self.headers: dict[str, str] = {}

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        for delta in ({"role": "assistant", "content": ""}, {"content": "Hello."}):
            chunk = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}  # fmt: skip
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        self.usage = Usage(prompt_tokens=12, completion_tokens=2)
        yield b"data: [DONE]\n\n"

    async def aclose(self) -> None:
        return None


class CannedUpstream(Provider):
    supports = frozenset({"chat"})

    def __init__(self) -> None:
        self.name = "canned"

    async def send(self, call: UpstreamCall) -> UpstreamResponse | UpstreamStream:
        if call.stream:
            return CannedStream()
        return UpstreamResponse(ANSWER, Usage(prompt_tokens=12, completion_tokens=2))


@dataclass
class Trace:
    frames: int = 0
    functions: set[str] = field(default_factory=set)
    path: list[tuple[int, str]] = field(default_factory=list)


class Tracer:
    """A `sys.setprofile` hook: our frames, their names, and their depth under the app."""

    def __init__(self, depth: int) -> None:
        self.trace = Trace()
        self._depth = depth
        self._stack: dict[FrameType, int] = {}

    def __call__(self, frame: FrameType, event: str, _arg: object) -> None:
        if event != "call" or not frame.f_code.co_filename.startswith(OURS):
            if event == "return":
                self._stack.pop(frame, None)
            return
        name = f"{Path(frame.f_code.co_filename).stem}.{frame.f_code.co_qualname}"
        self.trace.frames += 1
        self.trace.functions.add(name)
        parent = frame.f_back
        while parent is not None and parent not in self._stack:
            parent = parent.f_back
        level = 0 if parent is None else self._stack[parent] + 1
        self._stack[frame] = level
        if level <= self._depth and (not self.trace.path or self.trace.path[-1] != (level, name)):
            self.trace.path.append((level, name))


def _config(folder: Path) -> Any:
    text = f"""\
server: {{access_log: false}}
ledger: {{url: "sqlite:///{folder}/ledger.sqlite"}}
providers:
  canned: {{kind: openai, api_base: "http://127.0.0.1:1/v1", api_key: sk-upstream}}
routes:
  m:
    targets: [{{provider: canned, model: m}}]
keys:
  - {{name: trace, team: trace, key: {KEY}}}
"""
    return parse_config(text, "trace.yaml", {})


async def _request(gateway: Gateway, path: str, body: bytes) -> int:
    scope = {
        "type": "http", "method": "POST", "path": path, "raw_path": path.encode(),
        "query_string": b"", "http_version": "1.1",
        "headers": [(b"authorization", f"Bearer {KEY}".encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # a client that stays
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await gateway(scope, receive, send)
    return status


async def measure(depth: int) -> dict[str, Trace]:
    gateway = Gateway(
        _config(Path(tempfile.mkdtemp(prefix="spillover-trace-"))),
        build_provider=lambda *_: CannedUpstream(),
    )
    await gateway.start()
    traces: dict[str, Trace] = {}
    try:
        for name, (path, body) in REQUESTS.items():
            raw = orjson.dumps(body)
            assert await _request(gateway, path, raw) == 200, name  # warm: imports, caches
            tracer = Tracer(depth)
            sys.setprofile(tracer)
            try:
                status = await _request(gateway, path, raw)
            finally:
                sys.setprofile(None)
            assert status == 200, (name, status)
            traces[name] = tracer.trace
    finally:
        await gateway.stop()
    return traces


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=3, help="levels of the path to print")
    parser.add_argument("--path", choices=list(REQUESTS), action="append", default=[])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    traces = asyncio.run(measure(args.depth))
    print(f"{'endpoint':14} {'frames':>7} {'functions':>10}")
    for name, trace in traces.items():
        print(f"{name:14} {trace.frames:7d} {len(trace.functions):10d}")
    for name in args.path:
        print(f"\n{name}: the path, {args.depth + 1} levels")
        for level, function in traces[name].path:
            print("  " * level + function)
    if args.json is not None:
        figures = {
            name: {"frames": t.frames, "functions": len(t.functions), "path": t.path}
            for name, t in traces.items()
        }
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
