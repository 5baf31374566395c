"""Request bodies recorded from the agent CLIs (tests/fixtures/agents: Claude Code, Codex on
its default model and on gpt-5.1-codex-max; paths and ids anonymised), replayed as sent
against every target kind: Anthropic, OpenAI chat completions, OpenAI with the Responses API,
and the self-hosted pool. Each outcome is asserted: served, whole, and — where a target
cannot carry something — what it was served without, told in `x-spillover-dropped`."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.pool import start_sim
from tests.support.processes import (
    GATEWAY_KEY,
    ROOT,
    MockUpstream,
    Proc,
    reset_routing,
    start_gateway,
)

pytestmark = pytest.mark.e2e

FIXTURES = ROOT / "tests" / "fixtures" / "agents"
TARGETS = ("anthropic", "chat", "responses", "pool")


def _fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


@pytest.fixture(scope="module")
def replay_gateway(
    openai_upstream_proc: MockUpstream,
    anthropic_upstream_proc: MockUpstream,
    logs_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    # A window and a cache large enough for an agent's 15k-token prompts, decoding fast: an
    # agent asks for more output than the window holds, and gets what the window leaves.
    sim = start_sim(
        logs_dir, "sim-replays", "--max-model-len", "18000", "--kv-blocks", "2048",
        "--step-base-ms", "0.001", "--per-seq-ms", "0",
    )  # fmt: skip
    ledger = tmp_path_factory.mktemp("replays") / "ledger.sqlite"
    openai_url = openai_upstream_proc.url + "/v1"
    config = textwrap.dedent(f"""\
        ledger: {{url: "sqlite:///{ledger}", flush_ms: 50}}
        server: {{max_body_bytes: 4194304}}
        providers:
          claude: {{kind: anthropic, api_base: "{anthropic_upstream_proc.url}", api_key: x}}
          chat: {{kind: openai, api_base: "{openai_url}", api_key: x}}
          responses: {{kind: openai, api_base: "{openai_url}", api_key: x, responses_api: true}}
          pool:
            kind: vllm_pool
            model: tiny-llama
            replicas: ["{sim.url}"]
            gpu_cost_per_hour: 1.0
            tokens_per_replica_hour: 5000000
            health: {{every_s: 0.5}}
            admission: {{long_context_tokens: 1000000}}
        routes:
          anthropic: {{targets: [{{provider: claude, model: claude-sonnet-4-5}}]}}
          chat: {{targets: [{{provider: chat, model: gpt-4o}}]}}
          responses: {{targets: [{{provider: responses, model: gpt-4o}}]}}
          pool: {{targets: [{{provider: pool, model: tiny-llama}}]}}
        keys:
          - {{name: tests, team: qa, key: "${{TEST_GATEWAY_KEY}}"}}
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true, routes: []}}
        """)  # fmt: skip
    proc = start_gateway(config, logs_dir, "gateway-replays")  # waits for /health/ready
    try:
        yield proc
    finally:
        proc.stop()
        sim.stop()


@pytest.fixture
def gw(
    replay_gateway: Proc, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> Proc:
    """Mocks without the faults an earlier module left set, and routing without its state."""
    reset_routing(replay_gateway)
    return replay_gateway


def _replay(gw: Proc, fixture: dict[str, Any], body: dict[str, Any], route: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}", **fixture["headers"]}
    return httpx.post(
        gw.url + fixture["path"], json={**body, "model": route}, headers=headers, timeout=60
    )


def _events(reply: httpx.Response) -> list[str]:
    return [line[7:] for line in reply.text.splitlines() if line.startswith("event: ")]


# What each target kind is served without, for each client (advisory and hosted parts only:
# nothing essential is ever dropped under the default `untranslatable: reject`).
CLAUDE_CODE_DROPS = {
    "anthropic": set(),
    "chat": {"thinking", "context_management", "output_config"},
}
CODEX_DROPS = {"responses": set(), "chat": {"client_metadata"}}


@pytest.mark.parametrize("target", TARGETS)
def test_claude_codes_requests_on_every_target_kind(gw: Proc, target: str) -> None:
    fixture = _fixture("claude_code.json")
    for body in fixture["requests"]:
        reply = _replay(gw, fixture, body, target)
        assert reply.status_code == 200, reply.text[:500]
        events = _events(reply)
        assert events[0] == "message_start" and events[-1] == "message_stop", events
        dropped = reply.headers.get("x-spillover-dropped", "")
        expected = CLAUDE_CODE_DROPS.get(target, CLAUDE_CODE_DROPS["chat"])
        assert all(name in dropped for name in expected), dropped
        assert bool(dropped) == bool(expected), dropped
        assert "document" not in dropped and "tools[" not in dropped, dropped


@pytest.mark.parametrize("fixture_name", ["codex_default_model.json", "codex_gpt_5_1.json"])
@pytest.mark.parametrize("target", TARGETS)
def test_codexs_requests_on_every_target_kind(gw: Proc, target: str, fixture_name: str) -> None:
    fixture = _fixture(fixture_name)
    for body in fixture["requests"]:
        reply = _replay(gw, fixture, body, target)
        assert reply.status_code == 200, reply.text[:500]
        events = _events(reply)
        # The pool's window leaves less output than asked: its answer is incomplete, as OpenAI's
        # own is when it reaches max_output_tokens.
        ending = "response.incomplete" if target == "pool" else "response.completed"
        assert events[0] == "response.created" and events[-1] == ending, events[-3:]
        dropped = reply.headers.get("x-spillover-dropped", "")
        expected = CODEX_DROPS.get(target, CODEX_DROPS["chat"])
        assert all(name in dropped for name in expected), dropped
        assert bool(dropped) == bool(expected), dropped
        if fixture_name == "codex_gpt_5_1.json" and target != "responses":
            # Its web search is a tool only OpenAI runs: served without it, and said so.
            assert "tools[8] (web_search, run by OpenAI)" in dropped
