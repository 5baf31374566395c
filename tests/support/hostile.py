"""What a hostile client meets: two tenants' keys, every provider kind, and the helper that
drives the gateway as such a client."""

from __future__ import annotations

import sqlite3
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.processes import (
    ADMIN_KEY,
    ANTHROPIC_UPSTREAM_KEY,
    OPENAI_UPSTREAM_KEY,
    MockUpstream,
    Proc,
)

TEAM_A = "sk-hostile-team-a"
TEAM_B = "sk-hostile-team-b"
NAMED_LIKE_A = "sk-hostile-key-named-like-team-a"  # a key without a team, named "a"
LIMITED = "sk-hostile-limited-rpm-2"  # a key allowed two requests a minute
TAIL_KEY = "sk-tail-provider-secret"
SECRETS = (
    TEAM_A,
    TEAM_B,
    NAMED_LIKE_A,
    TAIL_KEY,
    OPENAI_UPSTREAM_KEY,
    ANTHROPIC_UPSTREAM_KEY,
    ADMIN_KEY,
)


@dataclass
class Hostile:
    proc: Proc
    capture: MockUpstream
    ledger: Path

    @property
    def url(self) -> str:
        return self.proc.url

    def post(
        self, path: str, body: Any, key: str = TEAM_A, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return httpx.post(
            self.url + path,
            json=body,
            headers={"Authorization": f"Bearer {key}", **(headers or {})},
            timeout=20,
        )

    def chat(self, model: str, key: str = TEAM_A, **fields: Any) -> httpx.Response:
        body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
        return self.post("/v1/chat/completions", {**body, **fields}, key)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            self.url + path,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=10,
            **kwargs,
        )

    def targets(self) -> dict[str, Any]:
        data: dict[str, Any] = self.admin("GET", "/admin/targets").json()["targets"]
        return data

    def healthy(self) -> None:
        """The gateway still answers, promptly, and another tenant is served."""
        started = time.monotonic()
        assert httpx.get(self.url + "/health/live", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0
        assert self.chat("openai", key=TEAM_B).status_code == 200

    def rows(self, settle_s: float = 0.5) -> list[dict[str, Any]]:
        time.sleep(settle_s)  # flush_ms is 20
        with sqlite3.connect(self.ledger) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute("SELECT * FROM spillover_ledger ORDER BY id")]


def hostile_config(openai_port: int, anthropic_port: int, ledger: Path) -> str:
    timeouts = "{connect_ms: 1000, first_byte_ms: 3000, idle_ms: 3000, total_ms: 5000}"
    return textwrap.dedent(f"""\
        server: {{max_body_bytes: 65536, access_log: true, drain_s: 0}}
        drills: {{enabled: true, max_fault_s: 120}}
        responses: {{max_history_bytes: 131072, max_stored_per_owner: 40}}
        ledger: {{url: "sqlite:///{ledger}", flush_ms: 20}}
        providers:
          tail:
            kind: litellm
            api_base: http://127.0.0.1:{openai_port}/v1
            api_key: {TAIL_KEY}
            timeouts: {timeouts}
          primary:
            kind: openai
            api_base: http://127.0.0.1:{openai_port}/v1
            api_key: {OPENAI_UPSTREAM_KEY}
            timeouts: {timeouts}
          claude:
            kind: anthropic
            api_base: http://127.0.0.1:{anthropic_port}
            api_key: {ANTHROPIC_UPSTREAM_KEY}
            timeouts: {timeouts}
        routes:
          tail:
            targets: [{{provider: tail, model: openai/gpt-4o}}]
          openai:
            targets: [{{provider: primary, model: gpt-4o}}]
          claude:
            targets: [{{provider: claude, model: claude-sonnet-4-5}}]
          claude-then-openai:
            targets:
              - {{provider: claude, model: claude-sonnet-4-5}}
              - {{provider: primary, model: gpt-4o}}
        keys:
          - {{name: team-a, team: a, key: {TEAM_A}}}
          - {{name: team-b, team: b, key: {TEAM_B}}}
          - {{name: a, key: {NAMED_LIKE_A}}}
          - {{name: limited, key: {LIMITED}, limits: {{rpm: 2}}}}
          - {{name: admin, key: "${{TEST_ADMIN_KEY}}", admin: true}}
        """)
