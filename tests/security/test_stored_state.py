"""Stored state against a hostile tenant: a stored conversation is its owner's alone, and
no name a config can hold stops the ledger or the response store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.hostile import NAMED_LIKE_A, TEAM_A, Hostile
from tests.support.processes import ROOT, MockUpstream

pytestmark = pytest.mark.e2e


def _stored(hostile: Hostile, key: str) -> str:
    reply = hostile.post("/v1/responses", {"model": "openai", "input": "remember 7"}, key=key)
    assert reply.status_code == 200, reply.text
    response_id: str = reply.json()["id"]
    return response_id


def test_a_key_named_like_a_team_is_another_owner(
    hostile: Hostile, openai_upstream: MockUpstream
) -> None:
    """Key "a" has no team; team "a"'s responses are not its own (owners were untyped)."""
    teams = _stored(hostile, TEAM_A)
    auth = {"Authorization": f"Bearer {NAMED_LIKE_A}"}
    for path in (f"/v1/responses/{teams}", f"/v1/responses/{teams}/input_items"):
        assert httpx.get(hostile.url + path, headers=auth).status_code == 404
    assert httpx.delete(hostile.url + f"/v1/responses/{teams}", headers=auth).status_code == 404
    continued = {"model": "openai", "input": "go on", "previous_response_id": teams}
    assert hostile.post("/v1/responses", continued, key=NAMED_LIKE_A).status_code == 404
    own = httpx.get(
        hostile.url + f"/v1/responses/{teams}", headers={"Authorization": f"Bearer {TEAM_A}"}
    )
    assert own.status_code == 200  # still there for its team
    # Nor do the two share OpenAI's prompt-cache routing: the key is per typed owner.
    system = [{"role": "system", "content": "You are a careful assistant. " * 400}]
    for key in (TEAM_A, NAMED_LIKE_A):
        body = {"model": "openai", "messages": [*system, {"role": "user", "content": "hi"}]}
        assert hostile.post("/v1/chat/completions", body, key=key).status_code == 200
    sent = [r["body"].get("prompt_cache_key") for r in openai_upstream.received()[-2:]]
    assert all(sent) and sent[0] != sent[1], sent
    assert not any(k.split("-")[0] == "a" for k in sent)  # no tenant name goes upstream


@pytest.mark.parametrize(
    "entry",
    [
        "keys: [{name: '%s', key: sk-x}]" % ("k" * 101),
        "keys: [{name: k, team: '%s', key: sk-x}]" % ("t" * 101),
    ],
)
def test_names_past_the_stores_widths_are_config_errors(tmp_path: Path, entry: str) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "providers: {p: {kind: openai, api_base: 'http://127.0.0.1:9/v1'}}\n"
        "routes: {r: {targets: [{provider: p, model: m}]}}\n" + entry + "\n"
    )
    failed = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(config)],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert failed.returncode == 1
    assert "gateway.yaml:3:" in failed.stderr  # line-numbered
    assert "longer than 100 characters" in failed.stderr


def test_a_long_stored_history_is_refused_before_it_is_loaded(hostile: Hostile) -> None:
    """Four stored turns then a 116-byte request once made the gateway load and forward the
    whole history every time; now the history is measured in the database first."""
    previous = None
    for _ in range(3):
        body = {"model": "openai", "input": "x " * 25_000, "max_output_tokens": 4}
        if previous:
            body["previous_response_id"] = previous
        reply = hostile.post("/v1/responses", body)
        assert reply.status_code == 200, reply.text
        previous = reply.json()["id"]
    small = {"model": "openai", "input": "hi", "store": False, "previous_response_id": previous}
    for _ in range(5):
        reply = hostile.post("/v1/responses", small)
        assert reply.status_code == 413, reply.text
        error = reply.json()["error"]
        assert error["code"] == "request_too_large"
        assert "responses.max_history_bytes" in error["message"]
    assert [row["status"] for row in hostile.rows()[-5:]] == [413] * 5
    hostile.healthy()


def test_an_owners_stored_responses_have_a_quota(hostile: Hostile) -> None:
    body = {"model": "openai", "input": "hi", "max_output_tokens": 4}
    statuses = [hostile.post("/v1/responses", body, key=NAMED_LIKE_A).status_code
                for _ in range(41)]  # fmt: skip
    assert statuses[:40] == [200] * 40 and statuses[40] == 429
    refused = hostile.post("/v1/responses", body, key=NAMED_LIKE_A).json()["error"]
    assert refused["code"] == "stored_responses_quota"
    unstored = hostile.post("/v1/responses", {**body, "store": False}, key=NAMED_LIKE_A)
    assert unstored.status_code == 200  # nothing kept, nothing refused
    assert hostile.post("/v1/responses", body).status_code == 200  # another owner's own
