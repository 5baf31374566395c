"""A gateway as a hostile client meets it: two tenants' keys, every provider kind, drills
on, the access log on, its ledger in a temporary SQLite file, and a capture listener (a
second mock upstream) that no request may ever reach."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hostile import SECRETS, Hostile, hostile_config
from tests.support.processes import (
    MockUpstream,
    mock_upstream,
    reset_routing,
    start_gateway,
)


@pytest.fixture(scope="session")
def capture_proc(logs_dir: Path) -> Iterator[MockUpstream]:
    """A listener no gateway request may ever reach: a smuggled host would be this one."""
    yield from mock_upstream("openai", logs_dir)


@pytest.fixture(scope="session")
def hostile_proc(
    openai_upstream_proc: MockUpstream,
    anthropic_upstream_proc: MockUpstream,
    capture_proc: MockUpstream,
    tmp_path_factory: pytest.TempPathFactory,
    logs_dir: Path,
) -> Iterator[Hostile]:
    ledger = tmp_path_factory.mktemp("hostile") / "ledger.sqlite"
    config = hostile_config(openai_upstream_proc.port, anthropic_upstream_proc.port, ledger)
    proc = start_gateway(config, logs_dir, name="hostile-gateway")
    try:
        yield Hostile(proc, capture_proc, ledger)
    finally:
        proc.stop()
        text = proc.output()
        leaked = [s for s in SECRETS if s in text]
        assert not leaked, f"secrets in the gateway's log: {len(leaked)}"
        assert capture_proc.received() == [], "a request reached the capture listener"


@pytest.fixture
def hostile(
    hostile_proc: Hostile, openai_upstream: MockUpstream, anthropic_upstream: MockUpstream
) -> Hostile:
    reset_routing(hostile_proc.proc)
    hostile_proc.admin("DELETE", "/admin/faults").raise_for_status()
    return hostile_proc
