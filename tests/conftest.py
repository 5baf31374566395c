"""Session fixtures: the mock upstreams and the shared gateway (helpers: tests/support/)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import (
    ANTHROPIC_UPSTREAM_KEY as ANTHROPIC_UPSTREAM_KEY,
)
from tests.support.processes import (
    GATEWAY_KEY,
    OPENAI_UPSTREAM_KEY,
    MockUpstream,
    Proc,
    gateway_config,
    mock_upstream,
    reset_routing,
    start_gateway,
)

# The container tests build an image (minutes): `make test-container` runs them.
collect_ignore = [] if os.environ.get("SPILLOVER_CONTAINER_TESTS") else ["container"]


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def openai_upstream_proc(logs_dir: Path) -> Iterator[MockUpstream]:
    yield from mock_upstream("openai", logs_dir)


@pytest.fixture(scope="session")
def anthropic_upstream_proc(logs_dir: Path) -> Iterator[MockUpstream]:
    yield from mock_upstream("anthropic", logs_dir)


@pytest.fixture
def openai_upstream(openai_upstream_proc: MockUpstream) -> MockUpstream:
    openai_upstream_proc.reset()
    return openai_upstream_proc


@pytest.fixture
def anthropic_upstream(anthropic_upstream_proc: MockUpstream) -> MockUpstream:
    anthropic_upstream_proc.reset()
    return anthropic_upstream_proc


@pytest.fixture(scope="session")
def gateway_proc(
    openai_upstream_proc: MockUpstream, anthropic_upstream_proc: MockUpstream, logs_dir: Path
) -> Iterator[Proc]:
    proc = start_gateway(
        gateway_config(openai_upstream_proc.port, anthropic_upstream_proc.port), logs_dir
    )
    try:
        yield proc
    finally:
        proc.stop()
        # Secrets never reach the logs.
        text = proc.output()
        assert OPENAI_UPSTREAM_KEY not in text and GATEWAY_KEY not in text


@pytest.fixture
def gateway(gateway_proc: Proc) -> Proc:
    reset_routing(gateway_proc)
    return gateway_proc
