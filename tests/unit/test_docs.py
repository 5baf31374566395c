"""Docs that cannot drift: the README stays a five-minute front page whose drawing is the real
tree, the configuration reference is the models' own, and the site builds with --strict."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from policies.reference import _sections, render
from tests.support.processes import ROOT

README = ROOT / "README.md"


def test_the_readme_is_a_front_page() -> None:
    text = README.read_text()
    assert len(text.encode()) <= 12 * 1024
    quick_start = text.split("## Quick start", 1)[1].split("```", 2)[1]
    commands = [line.split("#")[0].strip() for line in quick_start.splitlines()[1:] if line]
    assert commands == ["make run", "make test"]


def test_the_readme_drawing_is_the_real_tree() -> None:
    drawing = README.read_text().split("## The house", 1)[1].split("```", 2)[1]
    drawn: set[str] = set()
    parent = ""
    for line in drawing.splitlines():
        match = re.match(r"^( *)([\w.]+/?)", line)
        if not match:
            continue
        indent, name = match.groups()
        path = name if not indent else parent + name
        if not indent:
            parent = name
        drawn.add(path.rstrip("/"))
        for extra in re.findall(r"\s{2,}([\w]+\.py)\b", line):  # a second module on one line
            drawn.add(parent + extra)
        described = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
        for folder in re.findall(r"(?:^|· )(\w+)/", described):  # a/ · b/ · c/
            drawn.add(parent + folder)
    for path in drawn:
        assert (ROOT / path).exists(), f"the README draws {path}, which does not exist"
    folders = {
        f"gateway/{p.name}"
        for p in (ROOT / "gateway").iterdir()
        if p.is_dir() and (p / "__init__.py").exists()
    }
    assert folders <= drawn, f"folders missing from the drawing: {folders - drawn}"


def test_every_config_key_is_in_the_reference_with_a_description() -> None:
    text = render()
    for section in _sections():
        model: type[BaseModel] = section.model
        anchor = f"{{#{model.__name__.lower()}}}"
        assert anchor in text
        body = text.split(anchor, 1)[1].split("\n## ", 1)[0]
        for name, info in model.model_fields.items():
            assert f"| `{name}` |" in body, f"{model.__name__}.{name} missing"
            assert info.description, f"{model.__name__}.{name} has no description"


def test_generated_pages_are_not_stale() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/build_docs.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_a_stale_page_is_caught(tmp_path: Path) -> None:
    reference = ROOT / "docs" / "reference" / "configuration.md"
    kept = reference.read_text()
    try:
        reference.write_text(kept.replace("Address to listen on.", "Where it listens."))
        result = subprocess.run(
            [sys.executable, "scripts/build_docs.py", "--check"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    finally:
        reference.write_text(kept)
    assert result.returncode == 1
    assert "stale: docs/reference/configuration.md" in result.stderr


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "reference" / "configuration" / "index.html").exists()
    assert "Unreleased" in (tmp_path / "changelog" / "index.html").read_text()


def test_the_readme_config_is_valid_and_fifteen_lines() -> None:
    from policies.loader import parse_config

    text = README.read_text().split("```yaml", 1)[1].split("```", 1)[0]
    assert len(text.strip().splitlines()) <= 15
    env = {"OPENAI_API_KEY": "a", "ANTHROPIC_API_KEY": "b", "SEARCH_APP_KEY": "c"}
    config = parse_config(text, "README.md", env)
    assert [t.provider for t in config.routes["gpt-4o"].targets] == ["openai", "claude", "local"]


def test_every_shipped_alert_is_explained_in_the_operations_page() -> None:
    import yaml

    rules = yaml.safe_load((ROOT / "config" / "alerts.yaml").read_text())["groups"][0]["rules"]
    page = (ROOT / "docs" / "operations.md").read_text()
    assert [r["alert"] for r in rules if f"`{r['alert']}`" not in page] == []
