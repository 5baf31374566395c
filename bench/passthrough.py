"""The data plane alone: the gateway's server (uvicorn, httptools, uvloop) and its upstream
client (`gateway/upstream/`) with no pipeline between them — read the body, parse it with
orjson, forward it, answer (a stream passed through event by event). `bench/run.sh` runs it
beside the gateway, so a regression in the transport shows apart from the pipeline's.

    python -m bench.passthrough --port 18111 --upstream http://127.0.0.1:18100/v1"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from gateway.upstream.client import UpstreamClient

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-upstream"}


class PassThrough:
    def __init__(self, upstream: str) -> None:
        self._url = upstream.rstrip("/") + "/chat/completions"
        self._client = UpstreamClient(max_connections=100)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":  # the harness's readiness probe
            await _whole(send, 200, b'{"status":"ok"}', "application/json")
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = orjson.loads(body)
        answer = await self._client.request("POST", self._url, HEADERS, orjson.dumps(request))
        kind = answer.headers.get("content-type", "application/json")
        if not request.get("stream"):
            await _whole(send, answer.status, await answer.read(1 << 24), kind)
            return
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": [(b"content-type", kind.encode())]})  # fmt: skip
        while part := await answer.chunk(30.0):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _whole(send: Send, status: int, body: bytes, kind: str) -> None:
    headers = [(b"content-type", kind.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=18111)
    parser.add_argument("--upstream", default="http://127.0.0.1:18100/v1")
    options = parser.parse_args()
    uvicorn.run(
        PassThrough(options.upstream),
        host="127.0.0.1",
        port=options.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
