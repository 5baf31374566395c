"""A ledger that can keep no row stops the gateway at start, saying why: never a gateway
that answers requests it cannot bill."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.processes import ROOT, free_port

pytestmark = pytest.mark.e2e


def test_an_unwritable_ledger_fails_the_start_with_a_clear_message(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the ledger's directory should be")
    config = tmp_path / "spillover.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        ledger: {{url: "sqlite:///{blocker}/ledger.sqlite"}}
        providers:
          p: {{kind: openai, api_base: "http://127.0.0.1:9/v1"}}
        routes:
          m: {{targets: [{{provider: p, model: m}}]}}
        keys: [{{name: k, key: sk-start}}]
        """)
    )
    serve = ["serve", "--config", str(config), "--port", str(free_port())]
    run = subprocess.run(
        [sys.executable, "-m", "gateway", *serve],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode != 0
    assert "the ledger journal cannot be written at" in run.stderr
    assert "ledger.journal_dir" in run.stderr
