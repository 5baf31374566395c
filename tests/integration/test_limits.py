"""Gateway-side limits through the HTTP surface: rpm, tpm and concurrency per key, team and
route; OpenAI-style 429s; three replicas sharing one limit through Redis."""

from __future__ import annotations

import asyncio
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from gateway.state.limits import Check
from gateway.state.limits_redis import RedisLimiter
from gateway.state.shared import SharedRedis
from policies.limits import Rate
from policies.schema import StateConfig
from tests.support.processes import (
    GATEWAY_KEY,
    MockUpstream,
    Proc,
    free_port,
    start_gateway,
)
from tests.support.redis import RedisServer

pytestmark = pytest.mark.e2e
TOKENS_KEY = "sk-tokens-only"


def _config(
    openai_port: int, keys: str, route_limits: str = "", state: str = "", teams: str = ""
) -> str:
    return textwrap.dedent(f"""\
        {state}
        providers:
          primary: {{kind: openai, api_base: "http://127.0.0.1:{openai_port}/v1"}}
        routes:
          chat:
            targets: [{{provider: primary, model: gpt-4o}}]
            {route_limits}
        {teams}
        keys:
        """) + textwrap.indent(textwrap.dedent(keys), "  ")


@pytest.fixture
def limited(openai_upstream: MockUpstream, logs_dir: Path) -> Iterator[Proc]:
    keys = """\
        - {name: tests, team: qa, key: "${TEST_GATEWAY_KEY}", limits: {rpm: 60, burst_share: 0.04}}
        - {name: tokens, team: qa, key: sk-tokens-only, limits: {tpm: 2000, burst_share: 0}}
        - {name: other, team: qa, key: "${TEST_ADMIN_KEY}", limits: {concurrent: 1}}
        """
    proc = start_gateway(_config(openai_upstream.port, keys), logs_dir, name="limited")
    yield proc
    proc.stop()


def _post(proc: Proc, key: str, **extra: object) -> httpx.Response:
    body = {
        "model": "chat",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }
    return httpx.post(
        proc.url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_requests_per_minute_with_openai_style_headers(
    limited: Proc, openai_upstream: MockUpstream
) -> None:
    statuses = [_post(limited, GATEWAY_KEY).status_code for _ in range(2)]
    assert statuses == [200, 200]  # 4% of 60: two at once
    refused = _post(limited, GATEWAY_KEY)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    assert "key:tests" in error["message"] and "60 requests per minute" in error["message"]
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["x-ratelimit-limit-requests"] == "60"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    assert openai_upstream.count("/v1/chat/completions") == 2  # refused before any upstream
    client = openai.OpenAI(base_url=limited.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}])
    time.sleep(1.05)
    assert _post(limited, GATEWAY_KEY).status_code == 200  # one more per second


def test_tokens_per_minute_are_estimated_then_settled(limited: Proc) -> None:
    # Admission charges prompt + max_tokens (~1,515 of the 2,000 tpm); the answer used
    # ~31 tokens, and settling refunds the rest once the request is done.
    assert _post(limited, TOKENS_KEY, max_tokens=1_500).status_code == 200
    refused = _post(limited, TOKENS_KEY, max_tokens=1_500)
    assert refused.status_code == 429
    assert "2000 tokens per minute" in refused.json()["error"]["message"]
    assert refused.headers["x-ratelimit-limit-tokens"] == "2000"
    assert float(refused.headers["x-ratelimit-reset-tokens"].rstrip("s")) < 2
    # Charged on the estimate alone, the next one would wait ~45 s; settled, about 1 s.
    time.sleep(1.05)
    assert _post(limited, TOKENS_KEY, max_tokens=1_500).status_code == 200


def test_concurrency_and_keys_do_not_share_limits(
    limited: Proc, openai_upstream: MockUpstream
) -> None:
    from tests.support.processes import ADMIN_KEY

    openai_upstream.configure(latency_ms=600)

    async def both() -> list[int]:
        async with httpx.AsyncClient(timeout=10) as client:
            replies = await asyncio.gather(
                *(
                    client.post(
                        limited.url + "/v1/chat/completions",
                        json={"model": "chat", "messages": [{"role": "user", "content": "x"}]},
                        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                    )
                    for _ in range(2)
                )
            )
        return sorted(r.status_code for r in replies)

    assert asyncio.run(both()) == [200, 429]
    openai_upstream.configure(latency_ms=0)
    # The other key's limits are its own: exhausting "tests" leaves "other" untouched.
    while _post(limited, GATEWAY_KEY).status_code == 200:
        pass
    assert _post(limited, ADMIN_KEY).status_code == 200


async def test_redis_down_falls_back_to_a_per_replica_share() -> None:
    shared = SharedRedis(
        StateConfig(backend="redis", url=f"redis://127.0.0.1:{free_port()}/0", timeout_ms=50)
    )
    limiter = RedisLimiter(shared)
    limiter.replicas = 3  # as last seen alive
    check = Check("key:x:rpm", Rate(60, 3), 1)
    verdicts = [(await limiter.acquire([check]))[0].allowed for _ in range(5)]
    # 60 rpm over 3 replicas: 20 rpm here, burst 1 → two at once.
    assert verdicts == [True, True, False, False, False]
    assert not limiter.available and not shared.available
    await limiter.close()
    await shared.close()


def test_three_replicas_share_600_rpm(
    openai_upstream: MockUpstream, tmp_path: Path, logs_dir: Path
) -> None:
    redis_server = RedisServer(tmp_path)
    keys = '- {name: tests, key: "${TEST_GATEWAY_KEY}", limits: {rpm: 600}}\n'
    state = f"state: {{backend: redis, url: '{redis_server.url}', timeout_ms: 200}}"
    replicas = [
        start_gateway(_config(openai_upstream.port, keys, state=state), logs_dir, name=f"rpm-{i}")
        for i in range(3)
    ]
    try:
        admitted: list[float] = []

        async def drive() -> None:
            async with httpx.AsyncClient(timeout=10) as client:

                async def one(url: str) -> None:
                    reply = await client.post(
                        url + "/v1/chat/completions",
                        json={
                            "model": "chat",
                            "max_tokens": 1,
                            "messages": [{"role": "user", "content": "x"}],
                        },
                        headers={"Authorization": f"Bearer {GATEWAY_KEY}"},
                    )
                    if reply.status_code == 200:
                        admitted.append(time.monotonic())
                    else:
                        assert reply.status_code == 429

                end = time.monotonic() + 64
                i = 0
                running: set[asyncio.Task[None]] = set()
                while time.monotonic() < end:  # ~15 req/s offered against 10 req/s allowed
                    task = asyncio.ensure_future(one(replicas[i % 3].url))
                    running.add(task)
                    task.add_done_callback(running.discard)
                    i += 1
                    await asyncio.sleep(1 / 15)
                await asyncio.gather(*running)

        asyncio.run(drive())
        admitted.sort()
        windows = [
            sum(1 for t in admitted if s <= t < s + 60) for s in admitted if s + 60 <= admitted[-1]
        ]
        assert windows, "the run was too short"
        print(
            f"\nthree replicas, rpm 600: any 60 s window admitted "
            f"{min(windows)}..{max(windows)} requests ({len(admitted)} in all)"
        )
        assert min(windows) >= 570 and max(windows) <= 612
    finally:
        for proc in replicas:
            proc.stop()
        redis_server.stop()
