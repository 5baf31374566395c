"""Committed files that are generated: write them, or with --check only say which are stale
(a test and CI run the check, so a generated file never drifts from its source)."""

from __future__ import annotations

import sys
from pathlib import Path


def sync(pages: dict[Path, str], root: Path, argv: list[str], command: str) -> int:
    """Write every page whose text differs; with --check write nothing and exit 1 instead."""
    stale = [path for path, text in pages.items() if not path.exists() or path.read_text() != text]
    if "--check" in argv:
        for path in stale:
            print(
                f"stale: {path.relative_to(root)} (run `{command}` and commit it)", file=sys.stderr
            )
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(pages[path])
    return 0
