"""The console in a real browser (the distribution's headless Chromium, driven by
Playwright) against a real gateway process with mock providers and a simulated pool: sign in,
see a circuit open after a fault and close it with Reset, run a short drill and read its
verdict, download the spend CSV, reload a broken config and see where it is broken — with
no console error on any page. Each page's screenshot is taken here (`make screenshots`
writes them into docs/console/)."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI
from playwright.sync_api import Page, expect

from tests.support.browser import ConsoleWatch, chromium, screenshot_dir
from tests.support.pool import Replica, start_sim, wait_ready
from tests.support.processes import (
    ADMIN_KEY,
    ANTHROPIC_UPSTREAM_KEY,
    GATEWAY_KEY,
    OPENAI_UPSTREAM_KEY,
    MockUpstream,
    Proc,
    start_gateway,
)
from tests.support.synthetic_ledger import business_hours_ledger

pytestmark = pytest.mark.e2e
VIEWER_KEY = "sk-test-console-viewer"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _config(openai_port: int, anthropic_port: int, pool: list[Replica], ledger: Path) -> str:
    return textwrap.dedent(f"""\
        drills: {{enabled: true}}
        console: {{sample_s: 0.5}}
        ledger: {{url: "sqlite:///{ledger}", flush_ms: 50}}
        providers:
          primary: {{kind: openai, api_base: "http://127.0.0.1:{openai_port}/v1",
                     api_key: "{OPENAI_UPSTREAM_KEY}", headers: {{x-upstream-token: hdr-secret-1}}}}
          claude: {{kind: anthropic, api_base: "http://127.0.0.1:{anthropic_port}",
                    api_key: "{ANTHROPIC_UPSTREAM_KEY}"}}
          local:
            kind: vllm_pool
            model: llama-3.1-8b
            replicas: ["{pool[0].url}", "{pool[1].url}"]
            health: {{every_s: 0.5}}
            gpu_cost_per_hour: 2.0
            tokens_per_replica_hour: 1000000
        routes:
          gpt-4o:
            targets: [{{provider: primary, model: gpt-4o}}, {{provider: claude, model: claude-sonnet-4-5}}]
            fail_over_when: {{consecutive_failures: 3}}
            breaker: {{base_ejection_s: 1}}
          cached-gpt:
            targets: [{{provider: primary, model: gpt-4.1}}]
            cache: {{enabled: true}}
          reset-me:
            targets: [{{provider: primary, model: gpt-4o-mini}}]
            fail_over_when: {{consecutive_failures: 2}}
            breaker: {{base_ejection_s: 300}}
          llama-3.1-8b:
            targets: [{{provider: local, model: llama-3.1-8b}}, {{provider: primary, model: gpt-4o-mini}}]
        teams:
          qa: {{limits: {{rpm: 6000, tpm: 2000000}}, budget: {{daily_usd: 25}}}}
        keys:
          - {{name: tests, team: qa, key: "${{TEST_GATEWAY_KEY}}", limits: {{rpm: 1000, concurrent: 50}},
              budget: {{daily_usd: 5, monthly_usd: 100}}}}
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true, routes: []}}
          - {{name: on-call, key: "{VIEWER_KEY}", viewer: true, routes: []}}
        """)


@pytest.fixture(scope="module")
def pool(logs_dir: Path) -> Iterator[list[Replica]]:
    sims = [start_sim(logs_dir, f"console-sim-{i}", "--model", "llama-3.1-8b") for i in range(2)]
    yield sims
    for sim in sims:
        sim.stop()


@pytest.fixture(scope="module")
def console_gateway(
    openai_upstream_proc: MockUpstream,
    anthropic_upstream_proc: MockUpstream,
    pool: list[Replica],
    logs_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Proc]:
    ledger = tmp_path_factory.mktemp("console") / "ledger.sqlite"
    config = _config(openai_upstream_proc.port, anthropic_upstream_proc.port, pool, ledger)
    proc = start_gateway(config, logs_dir, name="console")
    for sim in pool:
        wait_ready(proc, sim.url)
    yield proc
    proc.stop()
    text = proc.output()
    for secret in (VIEWER_KEY, ADMIN_KEY, OPENAI_UPSTREAM_KEY, "hdr-secret-1"):
        assert secret not in text


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_dir(tmp_path_factory.mktemp("screenshots"))


def _traffic(gateway: Proc, count: int = 12) -> None:
    client = OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    for i in range(count):
        route = ("gpt-4o", "llama-3.1-8b")[i % 2]
        client.chat.completions.create(
            model=route, messages=[{"role": "user", "content": f"console traffic {i}"}],
            max_tokens=8,
        )  # fmt: skip


def _sign_in(page: Page, gateway: Proc, key: str) -> None:
    page.goto(gateway.url + "/ui")
    expect(page).to_have_url(gateway.url + "/ui/login")
    page.fill("#key", key)
    page.click("button[type=submit]")
    expect(page).to_have_url(gateway.url + "/ui/overview")


@contextlib.contextmanager
def _signed_in(gateway: Proc, key: str, section: str) -> Iterator[Page]:
    """A page signed in with `key`, on the console's `section`; no console error on it."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        watch = ConsoleWatch(page)
        _sign_in(page, gateway, key)
        page.click(f"nav >> text={section}")
        yield page
        assert watch.problems == []


def _shot(page: Page, shots: Path, name: str) -> None:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_operator_signs_in_resets_a_circuit_runs_a_drill_and_downloads_spend(
    console_gateway: Proc, shots: Path
) -> None:
    gateway = console_gateway
    _traffic(gateway)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1360, "height": 900}, accept_downloads=True)
        watch = ConsoleWatch(page)
        page.goto(gateway.url + "/ui/login")
        _shot(page, shots, "sign-in")
        page.fill("#key", "sk-not-a-key")
        page.click("button[type=submit]")
        expect(page.locator("[role=alert]")).to_contain_text("invalid API key")

        _sign_in(page, gateway, ADMIN_KEY)
        expect(page.locator("[data-metric=rps]")).not_to_have_text("\u2013", timeout=10_000)
        expect(page.locator("figure.chart canvas").first).to_be_visible()
        expect(page.locator(".who")).to_contain_text("admin · admin")

        # A fault makes the only target of reset-me fail: its circuit opens on the page.
        fault = {"kind": "error", "route": "reset-me", "status": 503, "duration_s": 60}
        httpx.post(gateway.url + "/admin/faults", json=fault, headers=ADMIN).raise_for_status()
        client = OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
        for _ in range(3):
            with pytest.raises(openai.APIStatusError):
                client.chat.completions.create(
                    model="reset-me", messages=[{"role": "user", "content": "x"}], max_tokens=4
                )
        httpx.delete(gateway.url + "/admin/faults", headers=ADMIN).raise_for_status()
        page.click("nav >> text=Routes and targets")
        row = page.locator('tr[data-target="primary/gpt-4o-mini"]').first
        expect(row.locator("[data-circuit]")).to_have_attribute("data-circuit", "open")
        _shot(page, shots, "targets")
        row.locator("button[data-action=reset]").click()
        expect(row.locator("[data-circuit]")).to_have_attribute("data-circuit", "closed")
        # …and the client is served again.
        client.chat.completions.create(
            model="reset-me", messages=[{"role": "user", "content": "x"}], max_tokens=4
        )

        # The overview lists what happened.
        page.click("nav >> text=Overview")
        incidents = page.locator(".incidents")
        expect(incidents).to_contain_text("injected: error on reset-me")
        expect(incidents).to_contain_text("circuit of primary/gpt-4o-mini open")
        expect(incidents).to_contain_text("primary/gpt-4o-mini reset by admin")
        _shot(page, shots, "overview")

        # A short drill, run from the console, ends with its verdict.
        page.click("nav >> text=Drills")
        page.select_option("select[name=scenario]", "provider-outage")
        page.fill("input[name=scale]", "0.15")
        page.click("button[data-action=run-drill]")
        expect(page.locator("[data-verdict]")).to_have_attribute(
            "data-verdict", "passed", timeout=30_000
        )
        expect(page.locator("table.slos")).to_contain_text("client-visible error rate")
        _shot(page, shots, "drill")
        page.click("text=All drills")
        expect(page.locator("table.runs")).to_contain_text("provider-outage")
        _shot(page, shots, "drills")

        # Spend, by key: the CSV holds what the table shows.
        page.click("nav >> text=Spend")
        page.select_option("select[name=by]", "key")
        page.click("button:has-text('Show')")
        expect(page.locator("table.spend")).to_contain_text("tests")
        _shot(page, shots, "spend")
        with page.expect_download() as download:
            page.click("a[data-action=csv]")
        rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
        by_key = {r["key"]: r for r in rows}
        assert int(by_key["tests"]["requests"]) >= 13
        assert float(by_key["tests"]["spend_usd"]) > 0
        assert any(k.startswith("console-drill:admin") for k in by_key)

        page.click("nav >> text=Limits and budgets")
        expect(page.locator("table.limits")).to_contain_text("of $5.00 hard")
        # The key's requests of the last minute, from the ledger, against its rpm.
        tests_row = page.locator("table.limits tr", has_text="key tests").inner_text()
        used = re.search(r"(\d+) / 1000", tests_row)
        assert used and int(used.group(1)) >= 13, tests_row
        assert "room now:" in tests_row
        _shot(page, shots, "limits")

        page.click("nav >> text=Pool")
        expect(page.locator("section.pool tbody tr")).to_have_count(2)
        expect(page.locator("section.pool").first).to_contain_text("ready")
        _shot(page, shots, "pool")

        page.click("nav >> text=Config")
        text = page.locator("pre.config").inner_text()
        assert "reset-me" in text and "********" in text
        for secret in (OPENAI_UPSTREAM_KEY, ANTHROPIC_UPSTREAM_KEY, "hdr-secret-1", VIEWER_KEY):
            assert secret not in page.content()
        _shot(page, shots, "config")

        page.click("form.who button")
        expect(page).to_have_url(gateway.url + "/ui/login")
        page.goto(gateway.url + "/ui/targets")
        expect(page).to_have_url(gateway.url + "/ui/login")
        assert watch.problems == []


def test_a_broken_config_is_shown_where_it_is_broken_and_the_old_one_keeps_serving(
    console_gateway: Proc, shots: Path
) -> None:
    gateway = console_gateway
    config_file = gateway.log.parent / f"console-{gateway.url.rsplit(':', 1)[1]}.yaml"
    good = config_file.read_text()
    config_file.write_text(good.replace("breaker: {base_ejection_s: 300}", "breaker: {bogus: 1}"))
    try:
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            watch = ConsoleWatch(page)
            _sign_in(page, gateway, ADMIN_KEY)
            page.goto(gateway.url + "/ui/config")
            page.click("button[data-action=reload]")
            alert = page.locator("[role=alert]")
            line = (
                good.splitlines().index(
                    next(x for x in good.splitlines() if "base_ejection_s: 300" in x)
                )
                + 1
            )
            expect(alert).to_contain_text(f"{config_file}:{line}:")
            expect(alert).to_contain_text("bogus")
            _shot(page, shots, "config-rejected")
            assert watch.problems == []
    finally:
        config_file.write_text(good)
    client = OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)
    client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=4
    )


def test_a_viewer_sees_everything_and_can_change_nothing(console_gateway: Proc) -> None:
    gateway = console_gateway
    with chromium() as browser:
        page = browser.new_page()
        watch = ConsoleWatch(page)
        _sign_in(page, gateway, VIEWER_KEY)
        expect(page.locator(".who")).to_contain_text("on-call · viewer")
        page.goto(gateway.url + "/ui/targets")
        expect(page.locator('tr[data-target="primary/gpt-4o"]')).to_have_count(1)
        expect(page.locator("button[data-action]")).to_have_count(0)
        page.goto(gateway.url + "/ui/drills")
        expect(page.locator("button[data-action=run-drill]")).to_have_count(0)
        # Forging the action with the viewer's own session and token is refused.
        token = page.locator("form.who input[name=csrf]").get_attribute("value")
        answer = page.request.post(
            gateway.url + "/ui/targets/reset", form={"csrf": token or "", "target": ""},
            headers={"origin": gateway.url},
        )  # fmt: skip
        assert answer.status == 403
        assert watch.problems == []


def test_the_console_works_without_javascript(console_gateway: Proc) -> None:
    gateway = console_gateway
    with chromium() as browser:
        context = browser.new_context(java_script_enabled=False)
        page = context.new_page()
        _sign_in(page, gateway, ADMIN_KEY)
        page.goto(gateway.url + "/ui/targets")
        page.locator('tr[data-target="primary/gpt-4o"] button[data-action=reset]').click()
        expect(page).to_have_url(gateway.url + "/ui/targets")
        expect(page.locator('tr[data-target="primary/gpt-4o"] [data-circuit]')).to_have_text(
            "closed"
        )
        for name in ("overview", "pool", "spend", "limits", "drills", "config"):
            page.goto(f"{gateway.url}/ui/{name}")
            expect(page.locator("h1")).to_be_visible()


def test_an_admin_issues_copies_uses_and_revokes_a_key_and_a_viewer_only_reads(
    console_gateway: Proc, shots: Path
) -> None:
    gateway = console_gateway
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gateway.url)
        page = context.new_page()
        watch = ConsoleWatch(page)
        _sign_in(page, gateway, ADMIN_KEY)
        page.click("nav >> text=Keys")
        expect(page.locator("table.keys")).to_contain_text("No stored keys yet")
        page.fill("input[name=name]", "browser-app")
        page.fill("input[name=rpm]", "600")
        page.click("button[data-action=create-key]")
        shown = page.locator("#new-secret")
        expect(shown).to_have_text(re.compile(r"^sk-spill-[0-9A-Za-z]{38}$"))
        secret = shown.inner_text()
        page.click("button[data-copy=new-secret]")
        expect(page.locator("button[data-copy=new-secret]")).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == secret
        row = page.locator('tr[data-key="browser-app"]')
        expect(row).to_contain_text("active")
        expect(row).to_contain_text("sk-spill-…" + secret[-4:])
        _shot(page, shots, "keys")

        # The copied secret works with the SDK …
        client = OpenAI(base_url=gateway.url + "/v1", api_key=secret, max_retries=0)
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=4
        )
        # … and is never on the page again.
        page.goto(gateway.url + "/ui/keys")
        assert secret not in page.content()
        page.locator('tr[data-key="browser-app"] button[data-action=revoke]').click()
        expect(page.locator('tr[data-key="browser-app"]')).to_contain_text("revoked")
        expect(page.locator("table.audit")).to_contain_text("key browser-app revoke")
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "x"}], max_tokens=4
            )
        assert watch.problems == []

        viewer = browser.new_page(viewport={"width": 1360, "height": 900})
        _sign_in(viewer, gateway, VIEWER_KEY)
        viewer.click("nav >> text=Keys")
        expect(viewer.locator("table.keys")).to_contain_text("browser-app")
        assert viewer.locator("button[data-action=create-key]").count() == 0
        assert viewer.locator("button[data-action=revoke]").count() == 0
        context.close()


def test_an_admin_sees_the_response_cache_and_purges_a_team(console_gateway: Proc) -> None:
    gateway = console_gateway
    client = OpenAI(base_url=gateway.url + "/v1", api_key=GATEWAY_KEY, max_retries=0)

    def ask() -> str:
        raw = client.chat.completions.with_raw_response.create(
            model="cached-gpt", messages=[{"role": "user", "content": "cache me"}],
            temperature=0, max_tokens=8,
        )  # fmt: skip
        return raw.headers["x-spillover-cache"]

    assert [ask(), ask()] == ["miss", "hit"]
    with _signed_in(gateway, ADMIN_KEY, "Spend") as page:
        # The pool's idle share for the period: two replicas at $2/h for the 7 days shown.
        pool = page.locator('table.pools-idle tr[data-pool="local"]')
        expect(pool.locator("td").nth(1)).to_have_text("2")
        expect(pool.locator("td").nth(3)).to_have_text("$672.00")
        row = page.locator('table.answer-cache tr[data-route="cached-gpt"]')
        expect(row).to_contain_text("50.0%")
        expect(row.locator("td").nth(1)).to_have_text("1")
        page.fill("input[name=team]", "qa")
        page.click("button[data-action=purge-cache]")
        expect(page).to_have_url(re.compile(r"/ui/spend\?purged=1$"))
    assert ask() == "miss"


def test_the_pool_page_shows_what_the_forecast_asks_for(
    pool: list[Replica], logs_dir: Path, tmp_path: Path
) -> None:
    """A pool with `capacity:` and weeks of ledger: the Pool page says what
    `spillover_pool_desired_replicas` says, and the forecast's error on the last day."""
    ledger = tmp_path / "ledger.sqlite"
    business_hours_ledger(ledger, days=12)
    config = textwrap.dedent(f"""\
        ledger: {{url: "sqlite:///{ledger}", flush_ms: 50, spool_path: "{tmp_path}/spool"}}
        providers:
          local:
            kind: vllm_pool
            model: llama-3.1-8b
            replicas: ["{pool[0].url}"]
            health: {{every_s: 0.5}}
            capacity:
              model_memory_gb: 16
              refresh_s: 1
              history_days: 10
              gpus:
                a10: {{usd_per_hour: 1.2, memory_gb: 24, kv_tokens_per_replica: 50000,
                       tokens_per_s: 100000, lead_time_s: 600}}
        routes:
          llama: {{targets: [{{provider: local, model: llama-3.1-8b}}]}}
        keys:
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true, routes: []}}
        """)
    proc = start_gateway(config, logs_dir, name="console-forecast")
    try:
        desired = error = None
        deadline = time.monotonic() + 60
        while (desired is None or error is None) and time.monotonic() < deadline:
            time.sleep(0.5)
            for line in httpx.get(proc.url + "/metrics", timeout=5).text.splitlines():
                if line.startswith("spillover_pool_desired_replicas{") and not line.endswith(
                    " 0.0"
                ):
                    desired = int(float(line.rsplit(" ", 1)[1]))
                if line.startswith('spillover_pool_forecast_error_ratio{pool="local"}'):
                    error = float(line.rsplit(" ", 1)[1])
        assert desired and error is not None
        with _signed_in(proc, ADMIN_KEY, "Pool") as page:
            outlook = page.locator("section.pool p.outlook")
            expect(outlook).to_contain_text(f"{desired} \u00d7 a10")
            expect(outlook).to_contain_text(f"its error on the last day {error * 100:.0f}%")
    finally:
        proc.stop()
