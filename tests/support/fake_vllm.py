"""A stand-in `vllm` executable for `spillover pool launch` tests: `vllm serve <model_path>
--host H --port P --served-model-name M ...` runs the simulator there instead (the other flags
are ignored). Its cold start comes from the environment: FAKE_VLLM_LOAD_S (seconds /health
answers 503) and FAKE_VLLM_WARMUP_MS (the first request's extra time)."""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> None:
    if argv[:1] != ["serve"]:
        raise SystemExit("usage: vllm serve MODEL_PATH --host H --port P --served-model-name M")

    def flag(name: str) -> str:
        return argv[argv.index(name) + 1]

    command = [
        sys.executable, "-m", "gateway", "sim-vllm",
        "--host", flag("--host"), "--port", flag("--port"),
        "--model", flag("--served-model-name"),
        "--load-s", os.environ.get("FAKE_VLLM_LOAD_S", "0"),
        "--warmup-ms", os.environ.get("FAKE_VLLM_WARMUP_MS", "0"),
    ]  # fmt: skip
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main(sys.argv[1:])
