"""`kind: litellm`: the long tail through litellm, offline, its retries off, its errors mapped
into ours so failover works the same. Exercised against the mock OpenAI upstream."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.processes import GATEWAY_KEY, MockUpstream, Proc, reset_routing, start_gateway

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def litellm_gateway(
    openai_upstream_proc: MockUpstream, anthropic_upstream_proc: MockUpstream, logs_dir: Path
) -> Iterator[Proc]:
    config = textwrap.dedent(f"""\
        providers:
          tail:
            kind: litellm
            api_base: http://127.0.0.1:{openai_upstream_proc.port}/v1
            api_key: sk-tail-secret
            timeouts: {{connect_ms: 1000, first_byte_ms: 2000, idle_ms: 2000, total_ms: 3000}}
          claude:
            kind: anthropic
            api_base: http://127.0.0.1:{anthropic_upstream_proc.port}
        routes:
          tail-model:
            targets:
              - {{provider: tail, model: openai/gpt-4o}}
              - {{provider: claude, model: claude-sonnet-4-5}}
          tail-embed:
            targets:
              - {{provider: tail, model: openai/text-embedding-3-small}}
        keys:
          - {{name: tests, key: "${{TEST_GATEWAY_KEY}}"}}
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true}}
        """)
    proc = start_gateway(config, logs_dir, name="litellm-gateway")
    yield proc
    proc.stop()
    assert "sk-tail-secret" not in proc.output()


@pytest.fixture
def client(litellm_gateway: Proc) -> openai.OpenAI:
    reset_routing(litellm_gateway)
    return openai.OpenAI(
        base_url=litellm_gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0, timeout=20
    )


def test_chat_stream_and_embeddings_through_litellm(
    client: openai.OpenAI, openai_upstream: MockUpstream
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="tail-model", max_tokens=3, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().choices[0].message.content == "Hello tok1 tok2"
    assert raw.headers["x-spillover-provider"] == "tail"
    sent = openai_upstream.received()[-1]
    assert sent["body"]["model"] == "gpt-4o"
    assert sent["headers"]["authorization"] == "Bearer sk-tail-secret"
    chunks = list(
        client.chat.completions.create(
            model="tail-model",
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "hi"}],
        )
    )
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello tok1 tok2 "
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    vectors = client.embeddings.create(model="tail-embed", input="x", encoding_format="float")
    assert len(vectors.data[0].embedding) == 8


@pytest.mark.parametrize("status", [429, 503, 500])
def test_litellm_errors_map_to_failover(
    client: openai.OpenAI,
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
    status: int,
) -> None:
    openai_upstream.configure(error_rate=1, error_status=status)
    raw = client.chat.completions.with_raw_response.create(
        model="tail-model", max_tokens=2, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-spillover-provider"] == "claude"
    # litellm's own retries are off: the failing upstream was asked exactly once.
    assert openai_upstream.count("/v1/chat/completions") == 1


def test_litellm_bad_request_is_not_retried(
    client: openai.OpenAI, openai_upstream: MockUpstream
) -> None:
    openai_upstream.configure(error_rate=1, error_status=400)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="tail-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert openai_upstream.count("/v1/chat/completions") == 1
