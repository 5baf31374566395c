"""Prompt caching end to end with the official SDK: requests whose tools arrive in a
different order each time hit the (caching) mock provider's cache once shaped, and miss
without shaping; Anthropic gets breakpoints; the savings show in the metrics."""

from __future__ import annotations

import hashlib
import random
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.processes import GATEWAY_KEY, MockUpstream, Proc, start_gateway

pytestmark = pytest.mark.e2e
TOOLS = [
    {"type": "function", "function": {"name": f"tool_{i}", "description": "Look it up. " * 20,
     "parameters": {"type": "object", "properties": {"q": {"type": "string"},
                                                     "limit": {"type": "integer"}}}}}
    for i in range(8)
]  # fmt: skip
SYSTEM = "You are the travel desk. Current time: {now}. " + "Booking policy applies. " * 250


@pytest.fixture
def gateway(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, logs_dir: Path
) -> Iterator[Proc]:
    config = textwrap.dedent(f"""\
        providers:
          openai: {{kind: openai, api_base: "http://127.0.0.1:{openai_upstream.port}/v1"}}
          claude: {{kind: anthropic, api_base: "http://127.0.0.1:{anthropic_upstream.port}"}}
        routes:
          shaped:
            targets: [{{provider: openai, model: gpt-4o}}]
            prompt_cache: {{volatile: ['\\d{{2}}:\\d{{2}}:\\d{{2}}']}}
          raw:
            targets: [{{provider: openai, model: gpt-4o}}]
            prompt_cache: {{canonical_tools: false, openai_cache_key: false}}
          claude:
            targets: [{{provider: claude, model: claude-sonnet-4-5}}]
            prompt_cache: {{volatile: ['\\d{{2}}:\\d{{2}}:\\d{{2}}'], anthropic_ttl: 1h}}
        keys:
          - {{name: tests, team: travel, key: "${{TEST_GATEWAY_KEY}}"}}
        """)
    proc = start_gateway(config, logs_dir, name="prompt-cache")
    yield proc
    proc.stop()


def _ask(client: openai.OpenAI, route: str, turn: int, rng: random.Random) -> int:
    tools = list(TOOLS)
    rng.shuffle(tools)
    answer = client.chat.completions.create(
        model=route,
        tools=tools,  # type: ignore[arg-type]
        tool_choice="none",
        max_tokens=8,
        messages=[
            {"role": "system", "content": SYSTEM.format(now=f"10:{turn:02d}:00")},
            {"role": "user", "content": f"Question {turn}"},
        ],
    )
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    return answer.usage.prompt_tokens_details.cached_tokens or 0


def test_shuffled_tools_hit_the_cache_once_shaped_and_miss_without(
    gateway: Proc, openai_upstream: MockUpstream
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    rng = random.Random(4)
    raw = [_ask(client, "raw", turn, rng) for turn in range(6)]
    assert raw == [0] * 6  # tool order and the clock change the bytes every time
    shaped = [_ask(client, "shaped", turn, rng) for turn in range(6)]
    assert shaped[0] == 0 and all(c >= 1024 for c in shaped[1:])
    sent = [r["body"] for r in openai_upstream.received() if r["body"].get("model") == "gpt-4o"]
    keys = {b.get("prompt_cache_key") for b in sent[6:]}
    # One key for the tenant and prefix, naming neither: a digest of the typed owner.
    owner = hashlib.blake2s(b"team:travel", digest_size=8).hexdigest()
    assert len(keys) == 1 and next(iter(keys)).startswith(owner + "-")
    assert all("prompt_cache_key" not in b for b in sent[:6])
    metrics = httpx.get(gateway.url + "/metrics").text
    assert 'spillover_prompt_shape_changes_total{change="tools",route="shaped"} 6.0' in metrics
    assert (
        'spillover_prompt_cache_saved_usd_total{model="gpt-4o",provider="openai",route="shaped"}'
        in metrics
    )


def test_anthropic_gets_breakpoints_and_reads_what_it_wrote(
    gateway: Proc, anthropic_upstream: MockUpstream
) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    rng = random.Random(5)
    cached = [_ask(client, "claude", turn, rng) for turn in range(3)]
    assert cached[0] == 0 and cached[1] > 1024 and cached[2] == cached[1]
    sent = anthropic_upstream.received()[-1]["body"]
    assert sent["system"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "[ref 1]" in sent["system"][0]["text"] and "10:02:00" not in str(sent["system"])
    assert "10:02:00" in str(sent["messages"][-1])  # the value rides in the final user turn
    metrics = httpx.get(gateway.url + "/metrics").text
    assert "spillover_prompt_cache_write_premium_usd_total" in metrics
