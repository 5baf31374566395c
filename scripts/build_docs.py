"""Write the generated pages of the docs site: the configuration reference (from the pydantic
models) and the home page (the README with its links made relative to docs/). With --check,
write nothing and exit 1 when a committed page differs from what would be generated."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from generated import sync  # noqa: E402

from policies.reference import render as render_reference  # noqa: E402

GENERATED_NOTE = "<!-- generated from README.md by `make docs`; edit the README -->\n"


def render_index() -> str:
    text = (ROOT / "README.md").read_text()
    text = re.sub(r"\]\(docs/", "](", text)
    text = text.replace("](CHANGELOG.md)", "](changelog.md)")
    return GENERATED_NOTE + text


def pages() -> dict[Path, str]:
    return {
        ROOT / "docs" / "reference" / "configuration.md": render_reference(),
        ROOT / "docs" / "index.md": render_index(),
    }


def main(argv: list[str]) -> int:
    return sync(pages(), ROOT, argv, "make docs")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
