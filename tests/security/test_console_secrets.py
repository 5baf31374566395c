"""The console renders its config by allow-list: with every secret-bearing field of the
config holding a marker — keys, digests, headers, litellm params, a pool's launch env and
arguments, URL userinfo and query strings, tracing headers — no marker appears on any page,
in a real headless Chromium, for an admin or a viewer."""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.browser import ConsoleWatch, chromium
from tests.support.processes import ADMIN_KEY, MockUpstream, Proc, start_gateway

pytestmark = pytest.mark.e2e
VIEWER_KEY = "sk-test-secrets-viewer"
TENANT_KEY = "sk-test-secrets-tenant"
PAGES = ("overview", "targets", "pool", "spend", "limits", "drills", "config")
DIGEST = hashlib.sha256(b"a client key nobody types").hexdigest()
MARKERS = [f"SECRETMARK{i:02d}" for i in range(12)] + [DIGEST, VIEWER_KEY, ADMIN_KEY]


def _config(port: int, ledger: Path) -> str:
    m = MARKERS
    return textwrap.dedent(f"""\
        server: {{metrics_require_key: true}}
        ledger: {{url: "sqlite:///{ledger}", flush_ms: 50}}
        state: {{backend: memory, url: "redis://user:{m[0]}@127.0.0.1:6379/0"}}
        tracing: {{otlp_endpoint: "http://127.0.0.1:9/v1/traces?token={m[1]}",
                   headers: {{authorization: "{m[2]}"}}, sample_ratio: 0}}
        providers:
          primary:
            kind: openai
            api_base: "http://u:{m[3]}@127.0.0.1:{port}/v1?api-key={m[4]}#{m[5]}"
            api_key: "{m[6]}"
            headers: {{x-upstream-token: "{m[7]}"}}
          tail:
            kind: litellm
            api_base: "http://127.0.0.1:{port}/v1"
            params: {{aws_secret_access_key: "{m[8]}", vertex_credentials: "{m[9]}"}}
          local:
            kind: vllm_pool
            model: tiny
            replicas: ["http://127.0.0.1:1"]
            launch:
              model_path: /models/tiny
              env: {{HF_TOKEN: "{m[10]}"}}
              extra_args: ["--api-key", "{m[11]}"]
        routes:
          gpt-4o: {{targets: [{{provider: primary, model: gpt-4o}}, {{provider: tail, model: gpt-4o}}]}}
          tiny: {{targets: [{{provider: local, model: tiny}}]}}
        keys:
          - {{name: client, key_sha256: "{DIGEST}"}}
          - {{name: tenant, team: payments, key: "{TENANT_KEY}"}}
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true, routes: []}}
          - {{name: on-call, key: "{VIEWER_KEY}", viewer: true, routes: []}}
        """)  # fmt: skip


@pytest.fixture(scope="module")
def secretive(
    openai_upstream_proc: MockUpstream,
    logs_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    ledger = tmp_path_factory.mktemp("console-secrets") / "ledger.sqlite"
    proc = start_gateway(_config(openai_upstream_proc.port, ledger), logs_dir, "console-secrets")
    yield proc
    proc.stop()


@pytest.mark.parametrize("key", [ADMIN_KEY, VIEWER_KEY], ids=["admin", "viewer"])
def test_no_secret_is_rendered_on_any_page(secretive: Proc, key: str) -> None:
    with chromium() as browser:
        page = browser.new_page()
        watch = ConsoleWatch(page)
        page.goto(secretive.url + "/ui/login")
        page.fill("#key", key)
        page.click("button[type=submit]")
        page.wait_for_url("**/ui/overview")
        for name in PAGES:
            page.goto(f"{secretive.url}/ui/{name}")
            html = page.content()
            found = [marker for marker in MARKERS if marker in html]
            assert not found, f"/ui/{name} shows {found}"
        config = page.content()
        assert "aws_secret_access_key" in config and "HF_TOKEN" in config  # named, masked
        assert not watch.problems, watch.problems


def test_metrics_can_require_a_key_for_what_they_say_about_tenants(secretive: Proc) -> None:
    """Series name teams and keys with their spend: with server.metrics_require_key only an
    admin or viewer key scrapes them."""
    assert httpx.get(secretive.url + "/metrics").status_code == 401
    tenant = {"Authorization": f"Bearer {TENANT_KEY}"}
    assert httpx.get(secretive.url + "/metrics", headers=tenant).status_code == 401
    viewer = {"Authorization": f"Bearer {VIEWER_KEY}"}
    scraped = httpx.get(secretive.url + "/metrics", headers=viewer)
    assert scraped.status_code == 200 and "spillover_requests_total" in scraped.text
    ready = httpx.get(secretive.url + "/health/ready")
    assert set(ready.json()) == {"status"}  # and readiness names nothing
