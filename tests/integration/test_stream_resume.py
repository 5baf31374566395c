"""Mid-stream continuation (`resume_streams: true`): the primary's stream is cut after the
first bytes, another target continues the partial answer, and the official SDK sees one
uninterrupted answer on one connection."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.processes import GATEWAY_KEY, MockUpstream, Proc, failover_config, start_gateway

pytestmark = pytest.mark.e2e

FULL = ["Hello"] + [f"tok{i}" for i in range(1, 16)]


@pytest.fixture
def resuming(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, logs_dir: Path
) -> Iterator[Proc]:
    proc = start_gateway(
        failover_config(openai_upstream.port, anthropic_upstream.port, "resume_streams: true\n"),
        logs_dir,
        name="resuming",
    )
    yield proc
    proc.stop()


def test_cut_stream_is_continued_by_the_fallback(
    resuming: Proc, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> None:
    openai_upstream.configure(cut_after=4)  # role chunk, "Hello ", "tok1 ", "tok2 ", cut
    client = openai.OpenAI(base_url=resuming.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    stream = client.chat.completions.create(
        model="chat",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "tell me"}],
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.split() == FULL
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    # The fallback was asked to continue the partial answer, not to start again.
    sent = anthropic_upstream.received()[-1]["body"]
    assert sent["messages"][-1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "Hello tok1 tok2"}],
    }
    metrics = httpx.get(resuming.url + "/metrics").text
    assert (
        'spillover_streams_resumed_total{from_provider="primary",route="chat",'
        'to_provider="claude"} 1.0'
    ) in metrics
    assert 'spillover_streams_interrupted_total{provider="primary",route="chat"}' not in metrics


def test_without_a_target_to_continue_the_stream_ends_with_an_error_event(
    resuming: Proc, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> None:
    openai_upstream.configure(cut_after=3)
    anthropic_upstream.configure(error_rate=1, error_status=529)
    client = openai.OpenAI(base_url=resuming.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    received: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(
            model="chat", stream=True, messages=[{"role": "user", "content": "x"}]
        ):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Hello tok1 "
