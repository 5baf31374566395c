"""The response cache through HTTP with the official SDKs: hits and misses on all three
client protocols, what keys it (shaping, tenants), what steers it (Cache-Control, TTL,
sampling), its ledger rows to the micro-dollar, and Redis shared by two replicas — and away."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.admin_api import admin
from tests.support.ledger_rows import ledger_row
from tests.support.processes import (
    ANTHROPIC_UPSTREAM_KEY,
    GATEWAY_KEY,
    OPENAI_UPSTREAM_KEY,
    MockUpstream,
    Proc,
    start_gateway,
)
from tests.support.redis import RedisServer

pytestmark = pytest.mark.e2e
OTHER_TEAM_KEY = "sk-test-other-team"
SAME_TEAM_KEY = "sk-test-same-team"


def config(openai_port: int, anthropic_port: int, ledger: Path, head: str = "") -> str:
    return head + textwrap.dedent(f"""\
        ledger: {{url: "sqlite:///{ledger}"}}
        providers:
          primary: {{kind: openai, api_base: "http://127.0.0.1:{openai_port}/v1",
                     api_key: {OPENAI_UPSTREAM_KEY}}}
          native: {{kind: openai, api_base: "http://127.0.0.1:{openai_port}/v1",
                    api_key: {OPENAI_UPSTREAM_KEY}, responses_api: true}}
          claude: {{kind: anthropic, api_base: "http://127.0.0.1:{anthropic_port}",
                    api_key: {ANTHROPIC_UPSTREAM_KEY}}}
        routes:
          gpt-4o:
            targets: [{{provider: primary, model: gpt-4o}}]
            cache: {{enabled: true, ttl_s: 60}}
            prompt_cache: {{volatile: ['Today is \\d{{4}}-\\d{{2}}-\\d{{2}}']}}
          brief:
            targets: [{{provider: primary, model: gpt-4o}}]
            cache: {{enabled: true, ttl_s: 1}}
          sampled:
            targets: [{{provider: primary, model: gpt-4o}}]
            cache: {{enabled: true, sampled: true}}
          claude:  # the Messages API of today takes no temperature: it always samples
            targets: [{{provider: claude, model: claude-sonnet-4-5}}]
            cache: {{enabled: true, sampled: true}}
          uncached:
            targets: [{{provider: primary, model: gpt-4o}}]
          responses-native:
            targets: [{{provider: native, model: gpt-4o}}]
            cache: {{enabled: true}}
        keys:
          - {{name: tests, team: qa, key: "${{TEST_GATEWAY_KEY}}"}}
          - {{name: colleague, team: qa, key: {SAME_TEAM_KEY}}}
          - {{name: other, team: ops, key: {OTHER_TEAM_KEY}}}
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true}}
        """)


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite"


@pytest.fixture
def gateway(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, ledger: Path, tmp_path: Path
) -> Iterator[Proc]:
    text = config(openai_upstream.port, anthropic_upstream.port, ledger)
    proc = start_gateway(text, tmp_path, name="cache")
    yield proc
    proc.stop()


def client(proc: Proc, key: str = GATEWAY_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=proc.url + "/v1", api_key=key, max_retries=0)


def ask(proc: Proc, key: str = GATEWAY_KEY, model: str = "gpt-4o", **extra: Any) -> Any:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "What is a cache?"}],
        "temperature": 0,
        "max_tokens": 16,
        **extra,
    }
    return client(proc, key).chat.completions.with_raw_response.create(**body)


def test_a_repeated_chat_request_is_answered_from_the_cache(
    gateway: Proc, openai_upstream: MockUpstream, ledger: Path
) -> None:
    first = ask(gateway)
    assert first.headers["x-spillover-cache"] == "miss"
    second = ask(gateway, user="someone-else")  # `user` does not change the answer
    assert second.headers["x-spillover-cache"] == "hit" and int(second.headers["age"]) >= 0
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert second.headers["x-spillover-provider"] == "primary"
    assert openai_upstream.count("/v1/chat/completions") == 1
    # The ledger: the miss paid, the hit cost nothing and saved exactly what the miss paid.
    paid = ledger_row(ledger, first.headers["x-request-id"])
    hit = ledger_row(ledger, second.headers["x-request-id"])
    assert paid["cost_micro_usd"] > 0 and not paid["cache_hit"]
    assert hit["cache_hit"] and hit["cost_micro_usd"] == 0
    assert hit["cache_saved_micro_usd"] == paid["cost_micro_usd"]
    assert hit["prompt_tokens"] == 0 and hit["completion_tokens"] == 0
    metrics = httpx.get(gateway.url + "/metrics").text
    assert (
        'spillover_response_cache_requests_total{result="hit",route="gpt-4o",team="qa"} 1.0'
        in metrics
    )


def test_shaping_makes_equivalent_requests_hit(
    gateway: Proc, openai_upstream: MockUpstream
) -> None:
    tools = [
        {"type": "function", "function": {"name": n, "parameters": {"type": "object"}}}
        for n in ("search", "fetch")
    ]
    system = {"role": "system", "content": "Be brief. Today is 2026-12-07."}
    question = {"role": "user", "content": "Which tool?"}
    first = ask(gateway, messages=[system, question], tools=tools)
    permuted = ask(gateway, messages=[system, question], tools=list(reversed(tools)))
    assert (first.headers["x-spillover-cache"], permuted.headers["x-spillover-cache"]) == (
        "miss",
        "hit",
    )
    other_day = {"role": "system", "content": "Be brief. Today is 2026-12-08."}
    assert (
        ask(gateway, messages=[other_day, question], tools=tools).headers["x-spillover-cache"]
        == "miss"
    )  # a different value is a different question
    assert openai_upstream.count("/v1/chat/completions") == 2


def test_teams_never_share_an_entry_and_a_team_shares_its_own(gateway: Proc) -> None:
    assert ask(gateway).headers["x-spillover-cache"] == "miss"
    assert ask(gateway, key=OTHER_TEAM_KEY).headers["x-spillover-cache"] == "miss"
    assert ask(gateway, key=SAME_TEAM_KEY).headers["x-spillover-cache"] == "hit"
    assert ask(gateway, key=OTHER_TEAM_KEY).headers["x-spillover-cache"] == "hit"


def test_cache_control_ttl_and_sampling(gateway: Proc, openai_upstream: MockUpstream) -> None:
    ask(gateway)
    no_store = ask(gateway, extra_headers={"Cache-Control": "no-store"})
    assert no_store.headers["x-spillover-cache"] == "bypass"
    refresh = ask(gateway, extra_headers={"Cache-Control": "no-cache"})
    assert refresh.headers["x-spillover-cache"] == "refresh"
    assert openai_upstream.count("/v1/chat/completions") == 3
    time.sleep(1.1)
    assert (
        ask(gateway, extra_headers={"Cache-Control": "max-age=1"}).headers["x-spillover-cache"]
        == "miss"
    )  # the stored answer is older than a second
    assert (
        ask(gateway, extra_headers={"Cache-Control": "max-age=60"}).headers["x-spillover-cache"]
        == "hit"
    )
    # TTL: the `brief` route keeps answers one second.
    assert ask(gateway, model="brief").headers["x-spillover-cache"] == "miss"
    assert ask(gateway, model="brief").headers["x-spillover-cache"] == "hit"
    time.sleep(1.1)
    assert ask(gateway, model="brief").headers["x-spillover-cache"] == "miss"
    # Sampling: not cached unless the route says so; temperature unset samples.
    assert ask(gateway, temperature=0.7).headers["x-spillover-cache"] == "bypass"
    assert ask(gateway, temperature=None).headers["x-spillover-cache"] == "bypass"
    assert ask(gateway, model="sampled", temperature=0.7).headers["x-spillover-cache"] == "miss"
    assert ask(gateway, model="sampled", temperature=0.7).headers["x-spillover-cache"] == "hit"
    assert ask(gateway, n=2).headers["x-spillover-cache"] == "bypass"
    assert "x-spillover-cache" not in ask(gateway, model="uncached").headers


def test_a_drill_bypasses_the_cache(gateway: Proc) -> None:
    ask(gateway)
    drilled = ask(gateway, extra_headers={"x-spillover-drill": "d1"})
    assert drilled.headers["x-spillover-cache"] == "bypass"


def test_messages_are_cached_on_the_anthropic_protocol(
    gateway: Proc, anthropic_upstream: MockUpstream
) -> None:
    sdk = anthropic.Anthropic(base_url=gateway.url, api_key=GATEWAY_KEY, max_retries=0)

    def once() -> Any:
        return sdk.messages.with_raw_response.create(
            model="claude", max_tokens=16,
            messages=[{"role": "user", "content": "What is a cache?"}],
        )  # fmt: skip

    first, second = once(), once()
    assert (first.headers["x-spillover-cache"], second.headers["x-spillover-cache"]) == (
        "miss",
        "hit",
    )
    assert second.parse().content[0].text == first.parse().content[0].text  # type: ignore[union-attr]
    assert anthropic_upstream.count("/v1/messages") == 1


def test_a_responses_hit_is_a_new_stored_response_that_chains(
    gateway: Proc, openai_upstream: MockUpstream
) -> None:
    sdk = client(gateway)

    def once() -> Any:
        return sdk.responses.with_raw_response.create(
            model="gpt-4o", input="What is a cache?", temperature=0, max_output_tokens=16
        )

    first, second = once(), once()
    assert (first.headers["x-spillover-cache"], second.headers["x-spillover-cache"]) == (
        "miss",
        "hit",
    )
    assert second.parse().id != first.parse().id
    assert second.parse().output_text == first.parse().output_text
    follow = sdk.responses.create(
        model="gpt-4o", input="And then?", previous_response_id=second.parse().id,
        temperature=0, max_output_tokens=16,
    )  # fmt: skip
    assert follow.output_text
    assert sdk.responses.retrieve(second.parse().id).id == second.parse().id


def test_redis_shares_the_cache_between_replicas_and_its_absence_is_no_error(
    openai_upstream: MockUpstream, anthropic_upstream: MockUpstream, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path)
    head = (
        f"state: {{backend: redis, url: '{redis.url}', timeout_ms: 200}}\n"
        "response_cache: {backend: redis}\n"
    )
    procs = [
        start_gateway(
            config(openai_upstream.port, anthropic_upstream.port, tmp_path / f"l{n}.sqlite", head),
            tmp_path,
            name=f"cache-replica-{n}",
        )
        for n in range(2)
    ]
    try:
        assert ask(procs[0]).headers["x-spillover-cache"] == "miss"
        assert ask(procs[1]).headers["x-spillover-cache"] == "hit"
        redis.stop()
        away = [ask(procs[n % 2]) for n in range(4)]
        assert all(a.headers["x-spillover-cache"] == "miss" for a in away)  # served, uncached
        assert all(a.parse().choices[0].message.content for a in away)
    finally:
        for proc in procs:
            proc.stop()
        redis.stop()


def test_admins_see_the_cache_and_purge_a_team(gateway: Proc) -> None:
    ask(gateway)
    ask(gateway)
    ask(gateway, key=OTHER_TEAM_KEY)
    state = admin(gateway, "GET", "/admin/cache").json()
    assert state["backend"] == "memory" and state["entries"] == 2 and state["bytes"] > 0
    assert state["routes"]["gpt-4o"]["hit"] == 1 and state["routes"]["gpt-4o"]["miss"] == 2
    assert state["routes"]["gpt-4o"]["saved_usd"] > 0
    assert admin(gateway, "DELETE", "/admin/cache").status_code == 400
    purged = admin(gateway, "DELETE", "/admin/cache?team=qa&route=gpt-4o")
    assert purged.json() == {"removed": 1}
    assert ask(gateway).headers["x-spillover-cache"] == "miss"
    assert ask(gateway, key=OTHER_TEAM_KEY).headers["x-spillover-cache"] == "hit"  # not theirs
    assert admin(gateway, "GET", "/admin/cache", key=GATEWAY_KEY).status_code == 403


def test_the_cost_report_shows_what_the_response_cache_saved(gateway: Proc, ledger: Path) -> None:
    first = ask(gateway)
    hits = [ask(gateway) for _ in range(3)]
    paid = ledger_row(ledger, first.headers["x-request-id"])["cost_micro_usd"]
    for hit in hits:
        ledger_row(ledger, hit.headers["x-request-id"])  # every row written
    rows = admin(gateway, "GET", "/admin/spend?by=route&since=1h").json()["rows"]
    route = next(r for r in rows if r["group"]["route"] == "gpt-4o")
    assert route["requests"] == 4 and route["response_cache_hits"] == 3
    assert round(route["spend_usd"] * 1e6) == paid
    assert round(route["response_cache_saved_usd"] * 1e6) == 3 * paid


def _streamed(proc: Proc, question: str, **extra: Any) -> tuple[str, str]:
    """A streamed chat answer's text and its `x-spillover-cache`."""
    raw = client(proc).chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": question}],
        temperature=0, max_tokens=16, stream=True, **extra,
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    return text, raw.headers["x-spillover-cache"]


def test_streams_are_stored_once_complete_and_replayed_either_way(
    gateway: Proc, openai_upstream: MockUpstream, ledger: Path
) -> None:
    first, said = _streamed(gateway, "Stream it")
    assert said == "miss" and first
    again, said = _streamed(gateway, "Stream it", stream_options={"include_usage": True})
    assert (again, said) == (first, "hit")
    whole = ask(gateway, messages=[{"role": "user", "content": "Stream it"}])
    assert whole.headers["x-spillover-cache"] == "hit"  # stored from a stream, served whole
    assert whole.parse().choices[0].message.content == first
    assert openai_upstream.count("/v1/chat/completions") == 1
    # Stored whole, served as a stream.
    asked = ask(gateway, messages=[{"role": "user", "content": "Whole first"}])
    text, said = _streamed(gateway, "Whole first")
    assert (text, said) == (asked.parse().choices[0].message.content, "hit")


def test_a_cut_stream_is_not_stored(gateway: Proc, openai_upstream: MockUpstream) -> None:
    openai_upstream.configure(cut_after=2)
    with pytest.raises(openai.APIError):
        _streamed(gateway, "Cut me")
    openai_upstream.configure(cut_after=0)
    _, said = _streamed(gateway, "Cut me")
    assert said == "miss"


def test_a_messages_stream_is_replayed_as_a_messages_stream(
    gateway: Proc, anthropic_upstream: MockUpstream
) -> None:
    sdk = anthropic.Anthropic(base_url=gateway.url, api_key=GATEWAY_KEY, max_retries=0)

    def streamed() -> tuple[str, str]:
        with sdk.messages.stream(
            model="claude", max_tokens=16, messages=[{"role": "user", "content": "Stream it"}]
        ) as stream:
            said = stream.response.headers["x-spillover-cache"]
            final = stream.get_final_message()
        return "".join(b.text for b in final.content if b.type == "text"), said

    first, said = streamed()
    assert said == "miss" and first
    assert streamed() == (first, "hit")
    assert anthropic_upstream.count("/v1/messages") == 1


@pytest.mark.parametrize("route", ["gpt-4o", "responses-native"])
def test_a_responses_stream_is_replayed_as_a_responses_stream(
    gateway: Proc, openai_upstream: MockUpstream, route: str
) -> None:
    """A chat target's answer (translated) and a Responses target's own (native)."""
    sdk = client(gateway)

    def streamed(question: str) -> tuple[str, str, str]:
        raw = sdk.responses.with_raw_response.create(
            model=route, input=question, temperature=0, max_output_tokens=16, stream=True
        )
        events = list(raw.parse())
        done = next(e for e in events if e.type in ("response.completed", "response.incomplete"))
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        return text, done.response.id, raw.headers["x-spillover-cache"]

    text, first_id, said = streamed("Stream a response")
    assert said == "miss" and text
    again, second_id, said = streamed("Stream a response")
    assert (again, said) == (text, "hit") and second_id != first_id
    assert sdk.responses.retrieve(second_id).output_text == text  # stored again, new id
    whole = sdk.responses.with_raw_response.create(
        model=route, input="Stream a response", temperature=0, max_output_tokens=16
    )
    assert whole.headers["x-spillover-cache"] == "hit" and whole.parse().output_text == text
    path = "/v1/responses" if route == "responses-native" else "/v1/chat/completions"
    assert openai_upstream.count(path) == 1
