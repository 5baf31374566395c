"""Where a benchmark keeps its raw results: bench/results/<date>-<commit>-<name>.json."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def results_path(name: str) -> Path:
    commit = subprocess.run(
        ["git", "-C", str(RESULTS.parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    RESULTS.mkdir(exist_ok=True)
    return RESULTS / f"{datetime.date.today():%Y-%m-%d}-{commit or 'nogit'}-{name}.json"
