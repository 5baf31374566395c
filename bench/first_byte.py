"""Where a request's time to its first byte goes inside the gateway: the gateway in this
process (pinned to CPU 1) with a timestamp at each stage, one request at a time from a raw
socket client, against the shared harness's nginx mock (start it as `bench/profile.sh`
does, on 127.0.0.1:18100). Prints the median offset of each stage from the request's
arrival at the ASGI app. A diagnostic, not a benchmark: the timestamps cost a little.

    .venv/bin/python bench/first_byte.py [--whole] [-n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from gateway.http import app as app_module
from gateway.pipeline import attempt as attempt_module
from gateway.providers import http as http_module

CONFIG = Path(__file__).with_name("spillover-bench.yaml")
PORT = 18121
marks: dict[str, float] = {}
runs: list[dict[str, float]] = []


def _mark(name: str) -> None:
    marks.setdefault(name, time.perf_counter())


def _instrument() -> None:
    """Wrap the three places a request passes on its way to the first byte."""
    gateway_call = app_module.Gateway.__call__
    post = http_module.PooledHTTPProvider._post
    send = attempt_module._send

    async def call(self: Any, scope: Any, receive: Any, reply: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/chat"):
            return await gateway_call(self, scope, receive, reply)
        marks.clear()
        _mark("request at the app")

        async def timed_reply(message: Any) -> None:
            if message["type"] == "http.response.start":
                _mark("response head sent")
            elif message.get("body"):
                _mark("first body bytes sent")
            await reply(message)

        await gateway_call(self, scope, receive, timed_reply)
        runs.append(dict(marks))

    async def timed_post(self: Any, *args: Any, **kwargs: Any) -> Any:
        _mark("upstream POST begins")
        response = await post(self, *args, **kwargs)
        _mark("upstream head read")
        return response

    async def timed_send(provider: Any, call: Any, served: Any) -> None:
        await send(provider, call, served)
        _mark("first event (or body) read")

    app_module.Gateway.__call__ = call  # type: ignore[method-assign,assignment]
    http_module.PooledHTTPProvider._post = timed_post  # type: ignore[method-assign]
    attempt_module._send = timed_send


def _client(n: int, stream: bool) -> list[float]:
    body = b'{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]'
    body += b',"stream":true}' if stream else b"}"
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer sk-bench\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    first: Callable[[bytes], bool] = (lambda b: b"data:" in b) if stream else (lambda b: b"{" in b)
    done = _stream_done if stream else _whole_done
    times = []
    with socket.create_connection(("127.0.0.1", PORT)) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(n):
            started = time.perf_counter()
            conn.sendall(request)
            seen = conn.recv(65536)
            while not first(seen):
                seen += conn.recv(65536)
            times.append(time.perf_counter() - started)
            while not done(seen):
                seen += conn.recv(65536)
            time.sleep(0.005)
    return times


def _stream_done(seen: bytes) -> bool:
    return seen.endswith(b"0\r\n\r\n")  # the chunked body's end


def _whole_done(seen: bytes) -> bool:
    head, _, body = seen.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return len(body) >= length


async def _measure(n: int, stream: bool) -> list[float]:
    os.environ[app_module.CONFIG_ENV] = str(CONFIG)
    config = uvicorn.Config(
        "gateway.http.app:app_from_env", factory=True, port=PORT, loop="uvloop",
        http="httptools", ws="none", lifespan="on", log_level="warning", access_log=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn's Server has no event to wait on)
        await asyncio.sleep(0.05)
    try:
        return await asyncio.to_thread(_client, n, stream)
    finally:
        server.should_exit = True
        await serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--whole", action="store_true", help="whole answers, not streams")
    parser.add_argument("-n", type=int, default=300)
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    _instrument()
    client = asyncio.run(_measure(args.n, not args.whole))
    settled = runs[len(runs) // 6 :]  # past the warm-up
    print(f"{'stage (median ms from the request at the app)':48} {'ms':>7}")
    for name in settled[-1]:
        offsets = [run[name] - run["request at the app"] for run in settled if name in run]
        print(f"{name:48} {statistics.median(offsets) * 1000:7.3f}")
    print(f"{'the client: request sent → first byte':48} {statistics.median(client) * 1000:7.3f}")


if __name__ == "__main__":
    main()
