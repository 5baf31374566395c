"""OpenAI Responses clients through the gateway, with the official `openai` SDK: translated to
chat completions or passed to a native Responses target, streamed with the Responses event
sequence, and chained by `previous_response_id` from the gateway's own store — across a
failover to an Anthropic target, visible only to its own team."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.ledger_rows import ledger_row
from tests.support.processes import (
    GATEWAY_KEY,
    MockUpstream,
    Proc,
    reset_routing,
    start_gateway,
)

pytestmark = pytest.mark.e2e

OTHER_TEAM_KEY = "sk-test-other-team"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def _config(openai_port: int, anthropic_port: int, ledger: Path) -> str:
    return textwrap.dedent(f"""\
        ledger: {{url: "sqlite:///{ledger}", flush_ms: 50}}
        providers:
          chat-only: {{kind: openai, api_base: "http://127.0.0.1:{openai_port}/v1"}}
          native: {{kind: openai, api_base: "http://127.0.0.1:{openai_port}/v1", responses_api: true}}
          claude: {{kind: anthropic, api_base: "http://127.0.0.1:{anthropic_port}"}}
        routes:
          gpt-chat:
            targets: [{{provider: chat-only, model: gpt-4o}}]
          gpt-native:
            targets: [{{provider: native, model: gpt-4o}}]
          claude-only:
            targets: [{{provider: claude, model: claude-sonnet-4-5}}]
          gpt-chat-no-hosted:
            targets: [{{provider: chat-only, model: gpt-4o}}]
            hosted_tools: reject
          native-then-claude:
            targets: [{{provider: native, model: gpt-4o}}, {{provider: claude, model: claude-sonnet-4-5}}]
            breaker: {{base_ejection_s: 0.2}}
        keys:
          - {{name: tests, team: qa, key: "${{TEST_GATEWAY_KEY}}"}}
          - {{name: other, team: ops, key: "{OTHER_TEAM_KEY}"}}
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true, routes: []}}
        """)  # fmt: skip


@pytest.fixture(scope="module")
def responses_gateway(
    openai_upstream_proc: MockUpstream,
    anthropic_upstream_proc: MockUpstream,
    logs_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Proc, Path]]:
    ledger = tmp_path_factory.mktemp("responses-ingress") / "ledger.sqlite"
    config = _config(openai_upstream_proc.port, anthropic_upstream_proc.port, ledger)
    proc = start_gateway(config, logs_dir, name="responses-ingress")
    yield proc, ledger
    proc.stop()


@pytest.fixture
def gw(
    responses_gateway: tuple[Proc, Path],
    openai_upstream: MockUpstream,
    anthropic_upstream: MockUpstream,
) -> Proc:
    reset_routing(responses_gateway[0])
    return responses_gateway[0]


def _client(gw: Proc, key: str = GATEWAY_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)


@pytest.mark.parametrize(("route", "path"), [("gpt-chat", "/v1/chat/completions"),
                                             ("gpt-native", "/v1/responses")])  # fmt: skip
def test_create_answers_a_response(
    gw: Proc,
    route: str,
    path: str,
    openai_upstream: MockUpstream,
    responses_gateway: tuple[Proc, Path],
) -> None:
    raw = _client(gw).responses.with_raw_response.create(
        model=route, input="Say hello", instructions="Be brief.", max_output_tokens=64,
        metadata={"ticket": "T-1"},
    )  # fmt: skip
    response = raw.parse()
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text and response.metadata == {"ticket": "T-1"}
    assert response.usage is not None and response.usage.input_tokens > 0
    assert response.usage.output_tokens > 0
    sent = openai_upstream.received()[-1]
    assert sent["path"] == path
    if path == "/v1/responses":  # native: as sent, the conversation kept by the gateway
        assert sent["body"]["store"] is False and sent["body"]["instructions"] == "Be brief."
    else:
        assert sent["body"]["messages"][0] == {"role": "system", "content": "Be brief."}
    row = ledger_row(responses_gateway[1], raw.headers["x-request-id"])
    assert (row["ingress"], row["status"], row["completion_tokens"]) == (
        "responses",
        200,
        response.usage.output_tokens,
    )


@pytest.mark.parametrize("route", ["gpt-chat", "gpt-native"])
def test_stream_follows_the_responses_event_sequence(gw: Proc, route: str) -> None:
    client = _client(gw)
    with client.responses.stream(model=route, input="count", max_output_tokens=64) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for expected in ("response.output_item.added", "response.content_part.added",
                     "response.output_text.delta", "response.output_text.done",
                     "response.output_item.done"):  # fmt: skip
        assert expected in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert final.output_text == text and final.id.startswith("resp_")
    assert events[0].response.id == final.id  # one id from created to completed
    assert client.responses.retrieve(final.id).output_text == text  # stored as it ended


def test_a_chain_of_three_turns_goes_on_across_a_failover(
    gw: Proc, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> None:
    client = _client(gw)
    first = client.responses.create(model="native-then-claude", input="My name is Ada.")
    openai_upstream.configure(error_rate=1.0, error_status=503)
    second = client.responses.with_raw_response.create(
        model="native-then-claude", input="What is my name?", previous_response_id=first.id
    )
    assert second.headers["x-spillover-provider"] == "claude"  # the native target is down
    # The Anthropic target received the whole conversation, translated.
    history = anthropic_upstream.received()[-1]["body"]["messages"]
    assert history[0]["content"][0]["text"] == "My name is Ada."
    assert history[1]["role"] == "assistant" and history[1]["content"][0]["text"]
    openai_upstream.configure(error_rate=0.0)
    reset_routing(gw)
    third = client.responses.create(
        model="native-then-claude", input="And again?", previous_response_id=second.parse().id
    )
    assert third.output_text
    # Back on the native target, which got every turn as input items and stores nothing.
    sent = openai_upstream.received()[-1]["body"]
    assert sent["store"] is False and "previous_response_id" not in sent
    said = [i["content"] for i in sent["input"] if i.get("role") == "user"]
    assert said == ["My name is Ada.", "What is my name?", "And again?"]
    assert [i.get("role") for i in sent["input"]] == [
        "user", "assistant", "user", "assistant", "user",
    ]  # fmt: skip


def test_a_function_calling_round_trip(gw: Proc) -> None:
    client = _client(gw)
    for route in ("gpt-chat", "gpt-native"):
        asked = client.responses.create(
            model=route,
            input="Weather in Oslo?",
            tools=[WEATHER],
            tool_choice="required",  # type: ignore[list-item]
        )
        call = next(item for item in asked.output if item.type == "function_call")
        assert call.name == "get_weather" and '"city"' in call.arguments  # type: ignore[union-attr]
        answered = client.responses.create(
            model=route,
            previous_response_id=asked.id,
            tools=[WEATHER],  # type: ignore[list-item]
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "12°C"}],  # type: ignore[union-attr]
        )
        assert answered.output_text and answered.previous_response_id == asked.id


def test_retrieve_delete_and_input_items_belong_to_their_team(gw: Proc) -> None:
    client = _client(gw)
    created = client.responses.create(
        model="gpt-chat",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
    )
    assert client.responses.retrieve(created.id).id == created.id
    items = client.responses.input_items.list(created.id)
    assert [i.type for i in items.data] == ["message"] and items.data[0].id  # type: ignore[union-attr]
    other = _client(gw, OTHER_TEAM_KEY)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="gpt-chat", input="hi", previous_response_id=created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(created.id)
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    unstored = client.responses.create(model="gpt-chat", input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_a_broken_stream_ends_with_response_failed(gw: Proc, openai_upstream: MockUpstream) -> None:
    openai_upstream.configure(cut_after=5, output_tokens=40)
    for route in ("gpt-chat", "gpt-native"):
        with _client(gw).responses.stream(model=route, input="talk") as stream:
            kinds = [e.type for e in stream]
        assert kinds[0] == "response.created" and kinds[-1] == "response.failed", kinds


def test_what_a_chat_target_cannot_run_is_dropped_and_told_or_refused_by_name(gw: Proc) -> None:
    # Serving without search beats an outage: by default the hosted tool is dropped, and said.
    raw = _client(gw).responses.with_raw_response.create(
        model="gpt-chat",
        input="news?",
        tools=[{"type": "web_search"}, WEATHER],  # type: ignore[list-item]
    )
    assert raw.headers["x-spillover-dropped"] == "tools[0] (web_search, run by OpenAI)"
    assert raw.parse().output[0].type == "function_call"  # the client's own tool still works
    with pytest.raises(openai.BadRequestError) as refused:
        _client(gw).responses.create(
            model="gpt-chat-no-hosted",
            input="news?",
            tools=[{"type": "web_search"}],  # type: ignore[list-item]
        )
    assert "tools[0] (web_search" in refused.value.message
    assert "hosted_tools: reject" in refused.value.message
    with pytest.raises(openai.BadRequestError) as refused:  # essential: a file
        _client(gw).responses.create(
            model="gpt-chat",
            input=[{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}],
        )
    assert "input[0].content[0] (input_file)" in refused.value.message
    assert "untranslatable: reject" in refused.value.message
    with pytest.raises(openai.BadRequestError) as refused:  # named as what it is
        _client(gw).responses.create(
            model="claude-only",
            input=[{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}],
        )
    assert "claude takes Anthropic Messages" in refused.value.message


def test_a_reasoning_effort_reaches_a_claude_target_as_a_thinking_budget(
    gw: Proc, anthropic_upstream: MockUpstream
) -> None:
    raw = _client(gw).responses.with_raw_response.create(
        model="claude-only", input="Think, then say hi", reasoning={"effort": "medium"},
        max_output_tokens=8000,
    )  # fmt: skip
    sent = anthropic_upstream.received()[-1]["body"]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096}
    assert "x-spillover-dropped" not in raw.headers  # carried, so not reported dropped
    assert raw.parse().output_text  # the answer's thinking block is not the answer's text


def test_hostile_input_gets_openai_errors_never_a_500(gw: Proc) -> None:
    headers = {"Authorization": f"Bearer {GATEWAY_KEY}", "content-type": "application/json"}
    cases = [
        b"[]", b'{"model": "gpt-chat"}', b'{"model": "gpt-chat", "input": 5}',
        b'{"model": "gpt-chat", "input": [7]}', b'{"model": "gpt-chat", "input": "x", "store": "yes"}',
        b'{"model": "gpt-chat", "input": "x", "tools": [{"name": "f"}]}',
        b'{"model": "gpt-chat", "input": "x", "max_output_tokens": -1}',
        b'{"model": "gpt-chat", "input": [{"type": "message", "role": "wizard", "content": "x"}]}',
    ]  # fmt: skip
    for body in cases:
        reply = httpx.post(gw.url + "/v1/responses", content=body, headers=headers)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["error"]["type"] == "invalid_request_error"
    for path in ("/v1/responses/" + "x" * 300, "/v1/responses/nope/input_items?limit=1000"):
        assert httpx.get(gw.url + path, headers=headers).status_code in (400, 404)
    assert httpx.put(gw.url + "/v1/responses/abc", headers=headers).status_code == 405
    assert httpx.get(gw.url + "/v1/responses/abc").status_code == 401


@pytest.mark.parametrize("route", ["gpt-chat", "gpt-native"])
def test_an_openai_agents_sdk_agent_runs_a_function_tool_through_the_gateway(
    gw: Proc, route: str, openai_upstream: MockUpstream
) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # no export to OpenAI's tracing backend
    looked_up: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        looked_up.append(city)
        return f"12°C in {city}"

    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    agent = Agent(
        name="forecaster",
        instructions="Answer with the weather tool.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model=route, openai_client=client),
    )
    result = Runner.run_sync(agent, "Weather in Oslo?")
    assert looked_up  # the model called the tool and the agent ran it
    assert isinstance(result.final_output, str) and result.final_output
    # Two model turns went upstream: the call, then the answer after the tool's output.
    path = "/v1/responses" if route == "gpt-native" else "/v1/chat/completions"
    assert openai_upstream.count(path) == 2
