"""The two coding-agent CLIs nobody here wrote — Claude Code and Codex, from npm — run offline
against `spillover demo` exactly as `make run` ships it: their default model names, tool
turns over several requests, failover both ways when a primary is down, and a stream cut
mid-answer resumed on another target. Each run asserts the CLI's exit code, its answer and
the ledger rows the gateway kept for it.

The mocks call the tool the prompt names (`use Read …`), so every session has a tool turn:
the CLI runs the tool and sends its result, and the mock then answers in words."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import ROOT, free_ports

pytestmark = pytest.mark.e2e

CLIS = Path(os.environ.get("SPILLOVER_AGENT_CLIS", ROOT / ".agent-clis")) / "node_modules" / ".bin"
DEMO_KEY = "sk-spillover-demo"
ADMIN_KEY = "sk-spillover-admin"
ANSWER = "Hello " + " ".join(f"tok{i}" for i in range(1, 16))  # the mocks' 16 words


def _cli(name: str) -> Path:
    path = CLIS / name
    if not path.exists():
        message = f"{path} is missing: scripts/setup-agent-clis.sh installs it (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Demo:
    url: str
    ledger: Path
    openai_mock: str
    anthropic_mock: str

    def mock(self, url: str, **knobs: Any) -> None:
        httpx.post(f"{url}/_mock/config", json=knobs, timeout=5).raise_for_status()

    def reset(self) -> None:
        for url in (self.openai_mock, self.anthropic_mock):
            httpx.post(f"{url}/_mock/reset", timeout=5).raise_for_status()
            self.mock(url, error_rate=0, cut_after=0, output_tokens=16)
        httpx.post(
            f"{self.url}/admin/targets/reset",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=5,
        ).raise_for_status()

    def rows_since(self, since: float, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """The ledger rows of requests that began after `since` (at least `count` of them:
        the writer flushes in batches)."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows: list[dict[str, Any]] = []
            if self.ledger.exists():
                with contextlib.closing(sqlite3.connect(self.ledger)) as db:
                    db.row_factory = sqlite3.Row
                    query = "SELECT * FROM spillover_ledger WHERE ts >= ? ORDER BY ts"
                    with contextlib.suppress(sqlite3.OperationalError):
                        rows = [dict(r) for r in db.execute(query, (since,))]
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """`spillover demo` with its shipped config, in a folder of its own (its ledger there)."""
    home = tmp_path_factory.mktemp("agent-demo")
    # Five in a row: the gateway, two mocks, and the pool's two replicas (pool_port, +1).
    gateway, openai_port, anthropic_port, pool_port, _ = free_ports(5, consecutive=True)
    log = home / "demo.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--port", str(gateway),
         "--openai-port", str(openai_port), "--anthropic-port", str(anthropic_port),
         "--pool-port", str(pool_port)],
        cwd=home, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 40
        while "Ctrl-C stops everything" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the demo did not come up:\n{log.read_text()}")
            time.sleep(0.1)
        yield Demo(
            f"http://127.0.0.1:{gateway}",
            home / "spillover-ledger.sqlite",
            f"http://127.0.0.1:{openai_port}",
            f"http://127.0.0.1:{anthropic_port}",
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def fresh(demo: Demo) -> Demo:
    demo.reset()
    return demo


def _session_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Each run its own HOME and work folder: the CLIs read (and write) both."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (work / "notes.txt").write_text("the build is green\n")
    return home, work


def _run(
    argv: list[str], home: Path, work: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "OPENAI_", "CODEX_"))
    }
    return subprocess.run(
        argv, cwd=work, env={**clean, "HOME": str(home), "PWD": str(work), **env},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def claude(demo: Demo, tmp_path: Path, prompt: str, *args: str) -> dict[str, Any]:
    """`claude -p` against the demo; its one JSON result."""
    home, work = _session_dirs(tmp_path)
    env = {
        "ANTHROPIC_BASE_URL": demo.url,
        "ANTHROPIC_API_KEY": DEMO_KEY,
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    argv = [str(_cli("claude")), "-p", prompt, "--output-format", "json", "--max-turns", "4", *args]
    done = _run(argv, home, work, env)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    result: dict[str, Any] = json.loads(done.stdout)
    assert not result.get("is_error"), result
    return result


def codex(demo: Demo, tmp_path: Path, prompt: str) -> str:
    """`codex exec` against the demo on Codex's own default model; its answer."""
    home, work = _session_dirs(tmp_path)
    (home / "config.toml").write_text(
        f"""model_provider = "gw"
check_for_update_on_startup = false

[analytics]
enabled = false

[model_providers.gw]
name = "gw"
base_url = "{demo.url}/v1"
env_key = "GW_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
"""
    )
    argv = [str(_cli("codex")), "exec", "--skip-git-repo-check", "--disable", "plugins",
            "--disable", "remote_plugin", "--disable", "apps", "--disable", "in_app_updates",
            prompt]  # fmt: skip
    done = _run(argv, home, work, {"CODEX_HOME": str(home), "GW_KEY": DEMO_KEY})
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    return done.stdout


def _served(rows: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(r["ingress"], r["provider"], r["status"]) for r in rows]


def test_claude_code_on_its_default_model_with_a_tool_turn(fresh: Demo, tmp_path: Path) -> None:
    since = time.time()
    result = claude(fresh, tmp_path, "use Read on notes.txt", "--tools", "Read")
    assert result["result"].strip() == ANSWER
    rows = fresh.rows_since(since, 2)
    # Its default Opus name reached the Anthropic route through the `claude-*` pattern.
    assert {r["route"] for r in rows} == {"claude-sonnet-4-5"}
    assert _served(rows) == [("anthropic", "claude", 200)] * len(rows)
    sent = [
        r["body"] for r in httpx.get(f"{fresh.anthropic_mock}/_mock/requests").json()["requests"]
    ]
    results = [
        b for m in sent[-1]["messages"] if isinstance(m["content"], list) for b in m["content"]
    ]
    assert any(
        b.get("type") == "tool_result" for b in results
    )  # the tool ran, its result went back


def test_claude_code_on_an_openai_wire_route(fresh: Demo, tmp_path: Path) -> None:
    since = time.time()
    result = claude(
        fresh, tmp_path, "use Read on notes.txt", "--tools", "Read", "--model", "gpt-4o"
    )
    assert result["result"].strip() == ANSWER
    rows = fresh.rows_since(since, 2)
    assert len(rows) >= 2
    assert _served(rows) == [("anthropic", "primary", 200)] * len(rows)
    # Claude Code's thinking settings are advisory: served without them, and said so.
    assert all("thinking" in (r["dropped"] or "") for r in rows), rows


def test_claude_code_through_an_outage_of_its_primary(fresh: Demo, tmp_path: Path) -> None:
    fresh.mock(fresh.anthropic_mock, error_rate=1, error_status=503)
    since = time.time()
    result = claude(fresh, tmp_path, "use Read on notes.txt", "--tools", "Read")
    assert result["result"].strip() == ANSWER
    rows = [r for r in fresh.rows_since(since, 2) if r["status"] == 200]
    assert len(rows) >= 2
    assert {(r["provider"], r["fell_back"]) for r in rows} == {("primary", 1)}
    attempts = json.loads(rows[0]["attempts_detail"])
    assert attempts[0]["provider"] == "claude" and attempts[0]["outcome"] == "failed"


def test_claude_code_through_a_stream_cut(fresh: Demo, tmp_path: Path) -> None:
    fresh.mock(fresh.openai_mock, cut_after=6)  # the primary's stream breaks mid-answer
    since = time.time()
    result = claude(fresh, tmp_path, "say hello", "--tools", "", "--model", "gpt-4o")
    assert result["result"].strip() == ANSWER  # one seamless answer
    assert result["usage"]["output_tokens"] == 16  # the whole answer's, not the continuation's
    [row] = fresh.rows_since(since, 1)
    assert (row["provider"], row["resumed"], row["resumed_by"]) == (
        "primary", 1, "claude/claude-sonnet-4-5")  # fmt: skip
    assert row["fell_back"] == 1 and row["status"] == 200
    assert row["cost_micro_usd"] > 0


def test_codex_on_its_default_model_with_a_tool_turn(fresh: Demo, tmp_path: Path) -> None:
    since = time.time()
    out = codex(fresh, tmp_path, "use exec to list the files")
    assert ANSWER in out
    rows = fresh.rows_since(since, 2)
    # Codex's own default model name reached gpt-4o through `gpt-*`, served as sent.
    assert {r["route"] for r in rows} == {"gpt-4o"}
    assert _served(rows) == [("responses", "primary", 200)] * len(rows)
    sent = [r["body"] for r in httpx.get(f"{fresh.openai_mock}/_mock/requests").json()["requests"]]
    # Its default model gets its tools in an `additional_tools` item, `exec` a free-form
    # custom tool: the mock called it, Codex ran it and sent the output back.
    outputs = [i for i in sent[-1]["input"] if i.get("type") == "custom_tool_call_output"]
    assert outputs, [i.get("type") for i in sent[-1]["input"]]


def test_codex_through_an_outage_of_its_primary(fresh: Demo, tmp_path: Path) -> None:
    fresh.mock(fresh.openai_mock, error_rate=1, error_status=503)
    since = time.time()
    out = codex(fresh, tmp_path, "use exec to list the files")
    assert ANSWER in out
    rows = [r for r in fresh.rows_since(since, 2) if r["status"] == 200]
    assert len(rows) >= 2
    # A Responses client served by an Anthropic target, what it could not carry said so.
    assert {(r["ingress"], r["provider"], r["fell_back"]) for r in rows} == {
        ("responses", "claude", 1)
    }
    assert all("client_metadata" in (r["dropped"] or "") for r in rows)
    sent = [
        r["body"] for r in httpx.get(f"{fresh.anthropic_mock}/_mock/requests").json()["requests"]
    ]
    # Codex's namespaced tools went along as plain tools, its free-form `exec` as one with
    # an `input`; the call came back as Codex's own custom tool call and its output returned.
    tools = {t["name"]: t for t in sent[-1]["tools"]}
    assert {"exec", "spawn_agent", "wait"} <= set(tools)
    assert tools["exec"]["input_schema"]["required"] == ["input"]
    blocks = [
        b for m in sent[-1]["messages"] if isinstance(m["content"], list) for b in m["content"]
    ]
    assert any(b.get("type") == "tool_result" for b in blocks)
