"""The request path's stages timed in process, no sockets: what each costs per request, and
a whole request through the real ASGI app with a canned upstream. A guard against
regressions, not a benchmark of the machine: `make bench-check` compares against
bench/micro/baseline.json and fails when a stage is more than 25% slower.

    python -m bench.micro.stages                 # print the table
    python -m bench.micro.stages --check         # exit 1 on a regression (make bench-check)
    python -m bench.micro.stages --write-baseline

Each figure is the best of several repeats (the least disturbed by the rest of the machine);
timing still varies between machines: write the baseline on the machine that checks it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import orjson

from gateway.accounting.ledger import LedgerWriter
from gateway.http.app import Gateway
from gateway.keys import KeyStore
from gateway.metrics import GatewayMetrics
from gateway.pipeline.account import Accountant
from gateway.pipeline.admit import Admitter
from gateway.pipeline.context import RequestContext
from gateway.pipeline.ingress.body import checked_body
from gateway.pipeline.ingress.openai_chat import OpenAIProtocol
from gateway.pipeline.shape import shape
from gateway.providers.base import Provider, UpstreamCall, UpstreamResponse, Usage
from gateway.state.limits import MemoryLimiter
from policies.loader import parse_config
from policies.schema import GatewayConfig

BASELINE = Path(__file__).with_name("baseline.json")
REGRESSION = 1.25
KEY = "sk-bench"
BODY = orjson.dumps(
    {"model": "mock-gpt", "messages": [{"role": "user", "content": "Say hello to the bench."}],
     "max_tokens": 16}
)  # fmt: skip
ANSWER = orjson.dumps(
    {"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "mock-gpt",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello, bench."},
                  "finish_reason": "stop"}],
     "usage": {"prompt_tokens": 12, "completion_tokens": 4, "total_tokens": 16}}
)  # fmt: skip


def _config(folder: Path) -> GatewayConfig:
    text = f"""\
server: {{access_log: false}}
ledger: {{url: "sqlite:///{folder}/ledger.sqlite"}}
providers:
  mock: {{kind: openai, api_base: "http://127.0.0.1:1/v1", api_key: sk-upstream}}
routes:
  mock-gpt:
    targets: [{{provider: mock, model: mock-gpt}}]
    limits: {{rpm: 100000000, tpm: 1000000000}}
keys:
  - {{name: bench, team: bench, key: {KEY}, limits: {{rpm: 100000000}}}}
"""
    return parse_config(text, "micro.yaml", {})


class CannedUpstream(Provider):
    """Answers every call at once with the same completion."""

    supports = frozenset({"chat"})

    def __init__(self) -> None:
        self.name = "mock"

    async def send(self, call: UpstreamCall) -> UpstreamResponse:
        return UpstreamResponse(ANSWER, Usage(prompt_tokens=12, completion_tokens=4))


def _best(run: Callable[[], float], repeats: int) -> float:
    return min(run() for _ in range(repeats))


def _timed(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


async def _timed_async(fn: Callable[[], Awaitable[object]], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - start) / n * 1e6


async def measure(repeats: int = 5, n: int = 5000) -> dict[str, float]:
    """Microseconds per call of each stage, and per whole in-process request."""
    folder = Path(tempfile.mkdtemp(prefix="spillover-micro-"))
    config = _config(folder)
    out: dict[str, float] = {}
    keys = KeyStore(config)
    header = f"Bearer {KEY}".encode()
    out["auth"] = _best(lambda: _timed(lambda: keys.authenticate(header), n), repeats)
    for count in (10, 10_000):
        store, stored_header = _stored(config, count)
        auth = partial(store.authenticate, stored_header)
        out[f"auth (stored, {count:,} keys)"] = _best(partial(_timed, auth, n), repeats)
    chat = OpenAIProtocol("chat")
    depth = config.server.max_json_depth
    out["parse+validate"] = _best(
        lambda: _timed(lambda: checked_body(BODY, chat.validate, depth), n), repeats
    )
    route = config.routes["mock-gpt"]
    body = orjson.loads(BODY)
    out["shape"] = _best(lambda: _timed(lambda: shape(body, route.prompt_cache), n), repeats)
    metrics = GatewayMetrics()
    admitter = Admitter(MemoryLimiter(), metrics)
    admitter.configure(config)
    principal = keys.authenticate(header)

    def context() -> RequestContext:
        ctx = RequestContext(request_id="r", endpoint="chat")
        ctx.principal, ctx.route_name, ctx.route, ctx.body = principal, "mock-gpt", route, body
        return ctx

    async def admit_and_release() -> None:
        ctx = context()
        admission = await admitter.admit(ctx, route)
        if admission is not None:
            await admitter.release(ctx, admission)

    out["admit+release"] = min([await _timed_async(admit_and_release, n) for _ in range(repeats)])
    ledger = LedgerWriter(config.ledger)
    ledger.journal.open()
    accountant = Accountant(metrics, _prices(config), ledger)
    served = context()
    # What happened is the record's `outcome` (the context itself before 2026-12-07): this
    # bench also runs against older trees, to compare.
    outcome: Any = getattr(served, "outcome", served)
    outcome.status, outcome.usage = 200, Usage(prompt_tokens=12, completion_tokens=4)
    outcome.served_by = route.targets[0]
    out["account (metrics, cost, journal)"] = _best(
        lambda: _timed(lambda: accountant.record(served), n), repeats
    )
    out["request (in process)"] = min(
        [await _whole_requests(config, n // 5) for _ in range(repeats)]
    )
    return out


def _stored(config: GatewayConfig, count: int) -> tuple[KeyStore, bytes]:
    """A key store with `count` stored keys in its keyring, and the header of the last."""
    from gateway.keyring.keyring import Keyring, Snapshot
    from gateway.keyring.records import StoredKey
    from gateway.keyring.secrets import mint
    from gateway.keys import digest
    from policies.schema import Budget
    from policies.schema_base import Limits

    secrets = [mint() for _ in range(count)]
    stored = [
        StoredKey(
            name=f"app-{i}", team=None, user=None, role="user", priority="standard",
            routes=None, limits=Limits(), budget=Budget(), metadata={},
            secret_sha256=digest(secret.encode()), hint="", created_at=0.0, updated_at=0.0,
            expires_at=4e9,
        )
        for i, secret in enumerate(secrets)
    ]  # fmt: skip
    keyring = Keyring(None, 1.0)
    keyring.snapshot = Snapshot.of(1, stored, [])
    return KeyStore(config, None, keyring), f"Bearer {secrets[-1]}".encode()


def _prices(config: GatewayConfig) -> Any:
    from gateway.accounting.pricing import PriceTable

    return PriceTable.load({}).for_config(config)


async def _whole_requests(config: GatewayConfig, n: int) -> float:
    """Whole requests through the gateway's ASGI app: edge, auth, parse, admit, shape,
    decide, attempt (canned), answer, account — the HTTP server and sockets left out."""
    gateway = Gateway(config, build_provider=lambda *_: CannedUpstream())
    await gateway.start()
    scope = {
        "type": "http", "method": "POST", "path": "/v1/chat/completions", "query_string": b"",
        "headers": [(b"authorization", f"Bearer {KEY}".encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(BODY)).encode())],
    }  # fmt: skip
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    try:
        start = time.perf_counter()
        for _ in range(n):
            await gateway(scope, receive, send)
        elapsed = time.perf_counter() - start
    finally:
        await gateway.stop()
    assert set(statuses) == {200}, set(statuses)
    return elapsed / n * 1e6


def _table(now: dict[str, float], base: dict[str, float] | None) -> str:
    lines = [f"{'stage':36} {'µs/call':>10} {'baseline':>10} {'ratio':>7}"]
    for stage, value in now.items():
        was = (base or {}).get(stage)
        ratio = f"{value / was:6.2f}x" if was else ""
        shown = f"{was:10.2f}" if was else " " * 10
        lines.append(f"{stage:36} {value:10.2f} {shown} {ratio:>7}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 on a >25%% regression")
    parser.add_argument("--write-baseline", action="store_true")
    args = parser.parse_args(argv)
    now = asyncio.run(measure())
    base = json.loads(BASELINE.read_text())["us_per_call"] if BASELINE.exists() else None
    print(_table(now, base))
    if args.write_baseline:
        rounded = {stage: round(value, 3) for stage, value in now.items()}
        BASELINE.write_text(json.dumps({"us_per_call": rounded}, indent=2) + "\n")
        print(f"wrote {BASELINE}")
        return 0
    if args.check:
        if base is None:
            print("no baseline: run with --write-baseline first", file=sys.stderr)
            return 2
        worse = {s: v / base[s] for s, v in now.items() if s in base and v > base[s] * REGRESSION}
        for stage, ratio in worse.items():
            print(f"REGRESSION {stage}: {ratio:.2f}x the baseline", file=sys.stderr)
        return 1 if worse else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
