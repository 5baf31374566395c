"""The console's guard, as a hostile client meets it over HTTP (the browser tests drive the
pages): no page without a session, no action without the session's CSRF token and a
same-origin Origin, no action for a viewer, a client key never signs in, failed sign-ins
are throttled with Retry-After, a key removed by a reload ends its sessions, and no secret
is ever rendered back."""

from __future__ import annotations

import re
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support.processes import (
    ADMIN_KEY,
    GATEWAY_KEY,
    OPENAI_UPSTREAM_KEY,
    MockUpstream,
    Proc,
    start_gateway,
)
from tests.support.redis import real_redis_url

pytestmark = pytest.mark.e2e
VIEWER_KEY = "sk-test-guard-viewer"
PAGES = ("overview", "targets", "pool", "spend", "limits", "drills", "config")


def _config(openai_port: int, viewer: bool = True) -> str:
    viewer_line = f'  - {{name: watcher, key: "{VIEWER_KEY}", viewer: true}}\n' if viewer else ""
    return (
        textwrap.dedent(f"""\
        server: {{reload_poll_s: 0}}
        drills: {{enabled: true}}
        providers:
          primary: {{kind: openai, api_base: "http://127.0.0.1:{openai_port}/v1",
                     api_key: "{OPENAI_UPSTREAM_KEY}"}}
        routes:
          gpt-4o: {{targets: [{{provider: primary, model: gpt-4o}}]}}
        keys:
          - {{name: client, key: "${{TEST_GATEWAY_KEY}}"}}
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true, routes: []}}
        """)
        + viewer_line
    )


@pytest.fixture(scope="module")
def guarded(openai_upstream_proc: MockUpstream, logs_dir: Path) -> Iterator[Proc]:
    proc = start_gateway(_config(openai_upstream_proc.port), logs_dir, name="console-guard")
    yield proc
    proc.stop()
    for secret in (VIEWER_KEY, ADMIN_KEY, GATEWAY_KEY, OPENAI_UPSTREAM_KEY):
        assert secret not in proc.output()


@contextmanager
def _signed_in(proc: Proc, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proc.url, timeout=10) as client:
        answer = client.post("/ui/login", data={"key": key})
        assert answer.status_code == 303 and answer.headers["location"] == "/ui/overview"
        yield client


def _csrf(client: httpx.Client) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', client.get("/ui/targets").text)
    assert match
    return match.group(1)


def test_no_page_without_a_session(guarded: Proc) -> None:
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        for page in (*PAGES, "series?names=rps", "spend.csv", "targets/live"):
            answer = client.get(f"/ui/{page}")
            assert (answer.status_code, answer.headers.get("location")) == (303, "/ui/login")
        live = client.get("/ui/overview/live", headers={"hx-request": "true"})
        assert live.status_code == 204 and live.headers["hx-redirect"] == "/ui/login"
        assert client.post("/ui/targets/reset", data={"target": ""}).status_code == 401
    with httpx.Client(base_url=guarded.url, cookies={"spillover_session": "e30.AAAA"}) as forged:
        assert forged.get("/ui/overview").status_code == 303


def test_the_session_cookie_and_the_headers_of_every_page(guarded: Proc) -> None:
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        answer = client.post("/ui/login", data={"key": ADMIN_KEY})
        cookie = answer.headers["set-cookie"]
        for part in ("HttpOnly", "SameSite=strict", "Path=/ui", "Max-Age=28800"):
            assert part.lower() in cookie.lower()
        assert "secure" not in cookie.lower()  # plain HTTP here; set behind https
        assert ADMIN_KEY not in cookie
        for page in PAGES:
            shown = client.get(f"/ui/{page}")
            assert shown.status_code == 200, page
            csp = shown.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert shown.headers["x-frame-options"] == "DENY"
            assert shown.headers["cache-control"] == "no-store"
            assert "<script>" not in shown.text and " style=" not in shown.text
            for secret in (ADMIN_KEY, VIEWER_KEY, GATEWAY_KEY, OPENAI_UPSTREAM_KEY):
                assert secret not in shown.text
        static = client.get("/ui/static/vendor/htmx-2.0.7.min.js")
        assert static.status_code == 200 and "javascript" in static.headers["content-type"]


def test_an_action_needs_the_sessions_token_and_our_origin(guarded: Proc) -> None:
    with _signed_in(guarded, ADMIN_KEY) as admin, _signed_in(guarded, ADMIN_KEY) as other:
        token = _csrf(admin)
        assert admin.post("/ui/targets/reset", data={"target": ""}).status_code == 403
        assert admin.post("/ui/targets/reset", data={"csrf": "x"}).status_code == 403
        # A token from another session is no token for this one.
        assert admin.post("/ui/targets/reset", data={"csrf": _csrf(other)}).status_code == 403
        cross = admin.post(
            "/ui/targets/reset", data={"csrf": token}, headers={"origin": "https://evil.example"}
        )
        assert cross.status_code == 403
        done = admin.post(
            "/ui/targets/reset", data={"csrf": token}, headers={"origin": guarded.url}
        )
        assert done.status_code == 303
        htmx = admin.post(
            "/ui/targets/reset", data={"target": "primary/gpt-4o"},
            headers={"x-csrf-token": token, "hx-request": "true"},
        )  # fmt: skip
        assert htmx.status_code == 200 and 'data-circuit="closed"' in htmx.text
        unknown = admin.post("/ui/targets/reset", data={"csrf": token, "target": "nope/x"})
        assert unknown.status_code == 400
        huge = admin.post("/ui/targets/reset", data={"csrf": token, "pad": "x" * 40_000})
        assert huge.status_code == 413


def test_a_drill_scaled_below_its_faults_minimum_is_a_400_not_a_500(guarded: Proc) -> None:
    with _signed_in(guarded, ADMIN_KEY) as admin:
        token = _csrf(admin)
        for scenario in ("kv-pressure", "latency-spike", "rate-limit-storm"):
            refused = admin.post(
                "/ui/drills/run", data={"csrf": token, "scenario": scenario, "scale": "0.05"}
            )
            assert refused.status_code == 400, refused.text[:300]
            assert "too small" in refused.text and "Traceback" not in refused.text


def test_a_viewer_reads_and_a_client_key_cannot_sign_in(guarded: Proc) -> None:
    with _signed_in(guarded, VIEWER_KEY) as viewer:
        assert all(viewer.get(f"/ui/{page}").status_code == 200 for page in PAGES)
        token = _csrf(viewer)
        for action in ("targets/reset", "drills/run", "config/reload"):
            assert viewer.post(f"/ui/{action}", data={"csrf": token}).status_code == 403
        assert "data-action" not in viewer.get("/ui/targets").text
        # The admin API stays admin-only.
        admin_api = viewer.get("/admin/targets", headers={"authorization": f"Bearer {VIEWER_KEY}"})
        assert admin_api.status_code == 403
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        refused = client.post("/ui/login", data={"key": GATEWAY_KEY})
        assert refused.status_code == 200 and "may not use the console" in refused.text
        assert "set-cookie" not in refused.headers


def test_failed_sign_ins_are_throttled(guarded: Proc) -> None:
    with httpx.Client(base_url=guarded.url, timeout=10) as client:
        # Ten failures per address in five minutes (earlier tests here may have spent some).
        refused = 0

        # A forged X-Forwarded-For each time changes nothing: no proxy is configured as
        # trusted (server.forwarded_allow_ips), so the address is the connection's own.
        def sign_in(key: str) -> httpx.Response:
            forged = {"X-Forwarded-For": f"10.9.{refused // 250}.{refused % 250}"}
            return client.post("/ui/login", data={"key": key}, headers=forged)

        while (answer := sign_in("sk-guess")).status_code != 429:
            assert "invalid API key" in answer.text
            refused += 1
            assert refused <= 10
        throttled = sign_in(ADMIN_KEY)
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0


def test_a_key_removed_by_a_reload_ends_its_sessions(
    openai_upstream_proc: MockUpstream, logs_dir: Path
) -> None:
    proc = start_gateway(_config(openai_upstream_proc.port), logs_dir, name="console-revoke")
    try:
        with _signed_in(proc, VIEWER_KEY) as viewer, _signed_in(proc, ADMIN_KEY) as admin:
            config = next(logs_dir.glob(f"console-revoke-{proc.url.rsplit(':', 1)[1]}.yaml"))
            config.write_text(_config(openai_upstream_proc.port, viewer=False))
            reloaded = admin.post("/ui/config/reload", data={"csrf": _csrf(admin)})
            assert reloaded.status_code == 200 and "Reloaded." in reloaded.text
            assert viewer.get("/ui/overview").status_code == 303
            assert admin.get("/ui/overview").status_code == 200
            # Signing out ends the session even for a client that kept the cookie.
            kept = admin.cookies.get("spillover_session")
            assert admin.post("/ui/logout", data={"csrf": _csrf(admin)}).status_code == 303
            with httpx.Client(cookies={"spillover_session": kept or ""}) as replay:
                assert replay.get(proc.url + "/ui/overview").status_code == 303
    finally:
        proc.stop()


@pytest.mark.parametrize("state", ["redis", "memory"])
def test_a_sign_out_holds_on_every_replica_and_across_restarts(
    openai_upstream_proc: MockUpstream, logs_dir: Path, state: str
) -> None:
    """Revocations were kept per process and forgotten after 10,000: a signed-out cookie
    came back on another worker, another replica or after a restart."""
    secret = "s" * 40
    shared = (
        f"state: {{backend: redis, url: '{real_redis_url()}', "
        f"key_prefix: 'console-{uuid.uuid4().hex[:8]}:'}}\n"
        if state == "redis"
        else ""
    )
    config = (
        _config(openai_upstream_proc.port) + shared + f"console: {{session_secret: {secret}}}\n"
    )
    one = start_gateway(config, logs_dir, name=f"console-{state}-one")
    two = start_gateway(config, logs_dir, name=f"console-{state}-two")
    try:
        with _signed_in(one, ADMIN_KEY) as admin:
            kept = admin.cookies.get("spillover_session") or ""
            assert admin.post("/ui/logout", data={"csrf": _csrf(admin)}).status_code == 303
        if state == "redis":  # the other replica learns of it within its sync (1 s)
            deadline = time.monotonic() + 5
            while _overview(two, kept) != 303:
                assert time.monotonic() < deadline, "another replica still takes the cookie"
                time.sleep(0.2)
        one.stop()
        again = start_gateway(config, logs_dir, name=f"console-{state}-again")
        try:
            time.sleep(1.5)  # a sync, for the shared state
            assert _overview(again, kept) == 303  # a restart never revives it
        finally:
            again.stop()
    finally:
        one.stop()
        two.stop()


def _overview(proc: Proc, cookie: str) -> int:
    with httpx.Client(cookies={"spillover_session": cookie}) as client:
        return client.get(proc.url + "/ui/overview").status_code


def test_behind_a_tls_proxy_the_cookie_can_be_marked_secure(
    openai_upstream_proc: MockUpstream, logs_dir: Path
) -> None:
    config = _config(openai_upstream_proc.port) + "console: {secure_cookie: true}\n"
    proc = start_gateway(config, logs_dir, name="console-secure")
    try:
        answer = httpx.post(proc.url + "/ui/login", data={"key": ADMIN_KEY}, timeout=10)
        assert answer.status_code == 303
        assert "; secure" in answer.headers["set-cookie"].lower()
    finally:
        proc.stop()
