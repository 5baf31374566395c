"""Keys and teams as data, through the admin API of a real gateway process: issue, use with
the official SDK, limit, budget, rotate, revoke; what viewers and bad input get; the audit
log. Three replicas agreeing within a second: test_keyring_replicas.py."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.admin_api import admin, chat
from tests.support.processes import ADMIN_KEY, MockUpstream, Proc, start_gateway

pytestmark = pytest.mark.e2e
VIEWER_KEY = "sk-test-viewer-key"


def config(openai_port: int, ledger: str, extra: str = "") -> str:
    return (
        textwrap.dedent(f"""\
        ledger: {{url: "{ledger}"}}
        keyring: {{refresh_s: 0.2}}
        providers:
          primary: {{kind: openai, api_base: "http://127.0.0.1:{openai_port}/v1"}}
        routes:
          chat:
            targets: [{{provider: primary, model: gpt-4o}}]
          other:
            targets: [{{provider: primary, model: gpt-4o-mini}}]
        teams:
          file-team: {{budget: {{daily_usd: 100}}}}
        keys:
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true}}
          - {{name: viewer, key: {VIEWER_KEY}, viewer: true}}
        """)
        + extra
    )


@pytest.fixture
def gateway(openai_upstream: MockUpstream, tmp_path: Path) -> Iterator[Proc]:
    ledger = f"sqlite:///{tmp_path}/ledger.sqlite"
    proc = start_gateway(config(openai_upstream.port, ledger), tmp_path, name="keyring")
    yield proc
    proc.stop()


def new_key(proc: Proc, **body: Any) -> tuple[dict[str, Any], str]:
    made = admin(proc, "POST", "/admin/keys", json=body)
    assert made.status_code == 201, made.text
    return made.json()["key"], made.json()["secret"]


def test_a_key_issued_over_the_api_serves_the_sdk_and_obeys_its_limits(gateway: Proc) -> None:
    team = admin(gateway, "POST", "/admin/teams", json={"name": "growth", "limits": {"rpm": 600}})
    assert team.status_code == 201 and team.json()["limits"] == {"rpm": 600}
    key, secret = new_key(
        gateway, name="growth-app", team="growth", user="ana", routes=["chat"],
        limits={"rpm": 60, "burst_share": 0.04}, metadata={"service": "checkout"},
    )  # fmt: skip
    assert secret.startswith("sk-spill-") and len(secret) == 47
    assert key["hint"] == "sk-spill-…" + secret[-4:] and key["state"] == "active"
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=secret, max_retries=0)
    answer = client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )
    assert answer.choices[0].message.content
    with pytest.raises(openai.NotFoundError):  # its routes only
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
    assert [m.id for m in client.models.list()] == ["chat"]
    statuses = [chat(gateway, secret).status_code for _ in range(3)]
    assert statuses[-1] == 429  # 60 rpm with a 4 % burst: two more at once, then refused
    refused = chat(gateway, secret)
    assert "key:growth-app" in refused.json()["error"]["message"]
    assert refused.headers["retry-after"]
    # The secret is never shown again: not by show, list, audit.
    shown = [
        admin(gateway, "GET", "/admin/keys/growth-app").text,
        admin(gateway, "GET", "/admin/keys?team=growth").text,
        admin(gateway, "GET", "/admin/audit").text,
    ]
    assert all(secret not in text and secret[9:-6] not in text for text in shown)
    assert secret[9:-6] not in gateway.output()  # nor in the gateway's log


def test_limits_changed_over_the_api_apply_at_once(gateway: Proc) -> None:
    _, secret = new_key(gateway, name="tight", limits={"rpm": 1, "burst_share": 0})
    assert chat(gateway, secret).status_code == 200
    assert chat(gateway, secret).status_code == 429
    changed = admin(gateway, "PATCH", "/admin/keys/tight", json={"limits": {"rpm": 100000}})
    assert changed.status_code == 200 and changed.json()["limits"] == {"rpm": 100000}
    assert chat(gateway, secret).status_code == 200


def test_a_team_budget_counts_its_stored_keys_spend(gateway: Proc) -> None:
    made = admin(
        gateway, "POST", "/admin/teams", json={"name": "thrifty", "budget": {"daily_usd": 0.0001}}
    )
    assert made.status_code == 201
    _, secret = new_key(gateway, name="thrifty-app", team="thrifty")
    statuses = [chat(gateway, secret).status_code for _ in range(12)]
    assert statuses[0] == 200 and statuses[-1] == 429, statuses
    refused = chat(gateway, secret).json()["error"]
    assert (
        refused["code"] == "budget_exceeded" and "team thrifty daily budget" in refused["message"]
    )
    raised = admin(gateway, "PATCH", "/admin/teams/thrifty", json={"budget": {"daily_usd": 50}})
    assert raised.status_code == 200
    assert chat(gateway, secret).status_code == 200


def test_rotation_keeps_the_old_secret_for_its_grace_only(gateway: Proc) -> None:
    _, old = new_key(gateway, name="rotating")
    rotated = admin(gateway, "POST", "/admin/keys/rotating/rotate", json={"grace_s": 1.5})
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new != old and rotated.json()["key"]["previous_secret_until"] is not None
    assert chat(gateway, new).status_code == 200
    assert chat(gateway, old).status_code == 200  # within the grace
    time.sleep(1.7)
    assert chat(gateway, old).status_code == 401
    assert chat(gateway, new).status_code == 200
    at_once = admin(gateway, "POST", "/admin/keys/rotating/rotate", json={"grace_s": 0})
    assert chat(gateway, new).status_code == 401  # no grace: the old one stops at once
    assert chat(gateway, at_once.json()["secret"]).status_code == 200


def test_revoked_and_expired_keys_are_refused_everywhere(gateway: Proc) -> None:
    _, secret = new_key(gateway, name="leaked", role="admin")
    assert admin(gateway, "GET", "/admin/keys", key=secret).status_code == 200
    revoked = admin(gateway, "POST", "/admin/keys/leaked/revoke")
    assert revoked.status_code == 200 and revoked.json()["key"]["state"] == "revoked"
    assert chat(gateway, secret).status_code == 401
    assert admin(gateway, "GET", "/admin/keys", key=secret).status_code == 401
    signed_in = httpx.post(gateway.url + "/ui/login", data={"key": secret}, timeout=10)
    assert signed_in.status_code in (401, 403) or "invalid" in signed_in.text.lower()
    again = admin(gateway, "POST", "/admin/keys/leaked/revoke")
    assert again.status_code == 409
    assert admin(gateway, "PATCH", "/admin/keys/leaked", json={"user": "x"}).status_code == 409
    _, brief = new_key(gateway, name="brief", expires_in_s=1)
    assert chat(gateway, brief).status_code == 200
    time.sleep(1.1)
    assert chat(gateway, brief).status_code == 401
    listed = admin(gateway, "GET", "/admin/keys?state=expired").json()["keys"]
    assert [k["name"] for k in listed] == ["brief"]


def test_a_mistyped_secret_is_told_apart_from_a_guessed_one(gateway: Proc) -> None:
    _, secret = new_key(gateway, name="typo")
    typo = secret[:20] + ("A" if secret[20] != "A" else "B") + secret[21:]
    said = chat(gateway, typo).json()["error"]["message"]
    assert "checksum" in said
    guessed = chat(gateway, "sk-some-other-key").json()["error"]["message"]
    assert "checksum" not in guessed


def test_viewers_read_but_never_change_nor_see_secrets(gateway: Proc) -> None:
    new_key(gateway, name="seen")
    listed = admin(gateway, "GET", "/admin/keys", key=VIEWER_KEY)
    assert listed.status_code == 200 and [k["name"] for k in listed.json()["keys"]] == ["seen"]
    assert '"secret":' not in listed.text and "sha256" not in listed.text
    for method, path, body in [
        ("POST", "/admin/keys", {"name": "mine", "role": "admin"}),
        ("POST", "/admin/keys/seen/rotate", {}),
        ("POST", "/admin/keys/seen/revoke", None),
        ("PATCH", "/admin/keys/seen", {"routes": None}),
        ("POST", "/admin/teams", {"name": "t"}),
        ("POST", "/admin/reload", None),
    ]:
        answer = admin(gateway, method, path, key=VIEWER_KEY, json=body)
        assert answer.status_code == 403, (method, path, answer.text)
    # A user key reads nothing at all.
    _, user = new_key(gateway, name="plain")
    assert admin(gateway, "GET", "/admin/keys", key=user).status_code == 403


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"name": "bad name"}, 400, "name"),
        ({"name": "x" * 65}, 400, "name"),
        ({"name": "ok", "role": "root"}, 400, "role"),
        ({"name": "ok", "unknown": 1}, 400, "unknown"),
        ({"name": "ok", "routes": ["nope"]}, 400, "no such route"),
        ({"name": "ok", "team": "nobody"}, 400, "no team"),
        ({"name": "ok", "limits": {"rpm": 0}}, 400, "rpm"),
        ({"name": "ok", "metadata": {"big": "x" * 5000}}, 400, "metadata"),
        ({"name": "ok", "metadata": {"nested": {"a": 1}}}, 400, "metadata"),
        ({"name": "ok", "expires_at": 1000}, 400, "past"),
        ({"name": "admin"}, 409, "config file"),
    ],
)
def test_bad_input_gets_a_clear_error(
    gateway: Proc, body: dict[str, Any], status: int, words: str
) -> None:
    answer = admin(gateway, "POST", "/admin/keys", json=body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]["message"]


def test_names_are_unique_and_a_file_team_takes_keys(gateway: Proc) -> None:
    new_key(gateway, name="twice", team="file-team")
    assert admin(gateway, "POST", "/admin/keys", json={"name": "twice"}).status_code == 409
    assert admin(gateway, "POST", "/admin/teams", json={"name": "file-team"}).status_code == 409
    assert admin(gateway, "GET", "/admin/keys/nobody").status_code == 404
    assert admin(gateway, "PATCH", "/admin/teams/nobody", json={}).status_code == 404


def test_concurrent_updates_to_one_key_lose_nothing(gateway: Proc) -> None:
    new_key(gateway, name="busy")
    changes = [
        {"user": "someone"},
        {"limits": {"rpm": 77}},
        {"budget": {"monthly_usd": 9}},
        {"routes": ["chat"]},
        {"priority": "sheddable"},
        {"metadata": {"owner": "payments"}},
        {"expires_at": time.time() + 86_400},
        {"team": "file-team"},
    ]
    with concurrent.futures.ThreadPoolExecutor(len(changes)) as pool:
        answers = list(
            pool.map(lambda c: admin(gateway, "PATCH", "/admin/keys/busy", json=c), changes)
        )
    assert [a.status_code for a in answers] == [200] * len(changes)
    final = admin(gateway, "GET", "/admin/keys/busy").json()
    assert final["user"] == "someone" and final["limits"] == {"rpm": 77}
    assert final["budget"] == {"monthly_usd": 9.0} and final["routes"] == ["chat"]
    assert final["priority"] == "sheddable" and final["metadata"] == {"owner": "payments"}
    assert final["expires_at"] is not None and final["team"] == "file-team"
    updates = admin(gateway, "GET", "/admin/audit?subject=busy").json()["entries"]
    assert [e["action"] for e in updates].count("update") == len(changes)


def test_the_audit_log_says_who_did_what_before_and_after(gateway: Proc) -> None:
    _, secret = new_key(gateway, name="audited", limits={"rpm": 5})
    admin(gateway, "PATCH", "/admin/keys/audited", json={"limits": {"rpm": 9}})
    admin(gateway, "POST", "/admin/keys/audited/rotate", json={"grace_s": 0})
    admin(gateway, "POST", "/admin/keys/audited/revoke")
    entries = admin(gateway, "GET", "/admin/audit?subject=audited").json()["entries"]
    assert [e["action"] for e in entries] == ["revoke", "rotate", "update", "create"]
    assert all(e["actor"] == "admin" and e["kind"] == "key" for e in entries)
    create, update = entries[3], entries[2]
    assert create["before"] is None and create["after"]["limits"] == {"rpm": 5}
    assert update["before"]["limits"] == {"rpm": 5} and update["after"]["limits"] == {"rpm": 9}
    assert entries[0]["after"]["state"] == "revoked"
    text = admin(gateway, "GET", "/admin/audit").text
    assert secret not in text and "sha256" not in text
    page = admin(gateway, "GET", "/admin/audit?limit=2").json()
    older = admin(gateway, "GET", f"/admin/audit?limit=2&before={page['next']}").json()
    assert older["entries"][0]["id"] < page["entries"][-1]["id"]


def test_bad_keys_on_the_admin_api_are_throttled(gateway: Proc) -> None:
    codes = [
        admin(gateway, "GET", "/admin/keys", key=f"sk-guess-{n}").status_code for n in range(22)
    ]
    assert codes[:20] == [401] * 20 and codes[-1] == 429
    refused = admin(gateway, "GET", "/admin/keys", key="sk-guess-again")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1


def test_a_console_session_of_a_stored_key_ends_with_its_revocation(gateway: Proc) -> None:
    _, secret = new_key(gateway, name="watcher", role="viewer")
    with httpx.Client(base_url=gateway.url, timeout=10) as browser:
        signed_in = browser.post("/ui/login", data={"key": secret})
        assert signed_in.status_code == 303, signed_in.text
        before = browser.get("/ui/overview")
        assert before.status_code == 200 and "Overview" in before.text
        admin(gateway, "POST", "/admin/keys/watcher/revoke")
        after = browser.get("/ui/overview")
        assert after.status_code in (303, 401) or "sign in" in after.text.lower()
        assert "Overview" not in after.text


def test_a_file_that_names_a_stored_key_is_refused_on_reload(
    gateway: Proc, openai_upstream: MockUpstream, tmp_path: Path
) -> None:
    _, secret = new_key(gateway, name="stored-one")
    port = gateway.url.rsplit(":", 1)[1]
    path = tmp_path / f"keyring-{port}.yaml"
    ledger = f"sqlite:///{tmp_path}/ledger.sqlite"
    clash = '  - {name: stored-one, key: "sk-file-secret"}\n'
    path.write_text(config(openai_upstream.port, ledger, clash))
    reloaded = admin(gateway, "POST", "/admin/reload")
    assert reloaded.status_code == 400
    assert "keys[2].name: 'stored-one' is also a stored key" in reloaded.json()["errors"][0]
    assert chat(gateway, secret).status_code == 200  # the last good config keeps serving
    assert chat(gateway, "sk-file-secret").status_code == 401


def _cli(proc: Proc, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args, "--gateway", proc.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SPILLOVER_ADMIN_KEY": ADMIN_KEY},
    )


def test_the_cli_issues_uses_and_revokes_a_key(gateway: Proc) -> None:
    made_team = _cli(gateway, "teams", "create", "cli-team", "--daily-usd", "5")
    assert made_team.returncode == 0, made_team.stderr
    made = _cli(gateway, "keys", "create", "cli-app", "--team", "cli-team", "--rpm", "600",
                "--route", "chat")  # fmt: skip
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()  # the secret alone on stdout: it can be piped
    assert secret.startswith("sk-spill-") and "shown this once" in made.stderr
    assert chat(gateway, secret).status_code == 200
    listed = _cli(gateway, "keys", "list", "--json")
    assert [k["name"] for k in json.loads(listed.stdout)] == ["cli-app"]
    assert secret not in listed.stdout
    changed = _cli(gateway, "keys", "update", "cli-app", "--rpm", "1200")
    assert changed.returncode == 0 and '"rpm":1200' in _cli(
        gateway, "keys", "show", "cli-app"
    ).stdout.replace(" ", "")
    spent = _cli(gateway, "keys", "spend", "cli-app")
    assert spent.returncode == 0 and "cli-app: $" in spent.stdout
    assert _cli(gateway, "keys", "revoke", "cli-app").returncode == 0
    assert chat(gateway, secret).status_code == 401
    audit = _cli(gateway, "keys", "audit", "--subject", "cli-app")
    assert "key revoke" in audit.stdout and "key create" in audit.stdout
    refused = _cli(gateway, "keys", "create", "cli-app")
    assert refused.returncode == 1 and "409" in refused.stderr and "exists" in refused.stderr


def test_hostile_names_in_paths_and_queries_get_bounded_answers(gateway: Proc) -> None:
    long = "x" * 5000
    for method, path in [
        ("GET", f"/admin/keys/{long}"),
        ("PATCH", f"/admin/keys/{long}"),
        ("POST", f"/admin/keys/{long}/revoke"),
        ("GET", f"/admin/teams/{long}"),
    ]:
        answer = admin(gateway, method, path, json={} if method == "PATCH" else None)
        assert answer.status_code == 404 and len(answer.text) < 400, (method, answer.text[:200])
    assert admin(gateway, "GET", "/admin/keys?limit=100000").status_code == 400
    assert admin(gateway, "GET", "/admin/keys?state=unknown").status_code == 400
    assert admin(gateway, "GET", f"/admin/keys?after={long}").json()["keys"] == []
