"""Model names → routes: exact names, aliases and patterns, most specific first."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from policies.loader import ConfigError, load_config, parse_config
from policies.route_names import MAX_REMEMBERED, RouteNames

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "config"
ROOT = FIXTURES.parent.parent.parent


def test_exact_names_beat_patterns_and_longer_patterns_beat_shorter() -> None:
    names = RouteNames(
        {
            "gpt-4o": ["gpt-*", "codex-mini"],
            "gpt-5-route": ["gpt-5*"],
            "claude": ["claude-*", "*"],
            "haiku": ["claude-haiku-*"],
        }
    )
    assert names.resolve("gpt-4o") == "gpt-4o"
    assert names.resolve("codex-mini") == "gpt-4o"
    assert names.resolve("gpt-5.1-codex-max") == "gpt-5-route"  # 5 literal chars beat 4
    assert names.resolve("gpt-4.1") == "gpt-4o"
    assert names.resolve("claude-haiku-4-5-20251001") == "haiku"
    assert names.resolve("claude-opus-5-5") == "claude"
    assert names.resolve("anything") == "claude"  # the catch-all, last
    assert [p.text for p in names.patterns] == [
        "claude-haiku-*",
        "claude-*",
        "gpt-5*",
        "gpt-*",
        "*",
    ]


def test_a_pattern_matches_the_whole_name_and_nothing_is_a_regex() -> None:
    names = RouteNames({"r": ["a.b*"]})
    assert names.resolve("a.bc") == "r"
    assert names.resolve("axbc") is None  # `.` is a dot, not any character
    assert names.resolve("xa.bc") is None


def test_what_is_remembered_is_bounded() -> None:
    names = RouteNames({"r": ["x-*"]})
    for i in range(MAX_REMEMBERED + 50):
        assert names.resolve(f"y-{i}") is None
    assert names.resolve("x-1") == "r"  # still answered past the bound


def test_a_config_resolves_names_once_per_generation() -> None:
    config = parse_config(
        "providers: {p: {kind: openai, api_key: x}}\n"
        "routes:\n"
        "  claude-sonnet-4-5: {aliases: ['claude-*'], targets: [{provider: p, model: m}]}\n"
        "keys: [{name: k, key: sk-x}]\n",
        "inline.yaml",
        {},
    )
    assert config.route_names is config.route_names
    assert config.route_names.resolve("claude-opus-5-5") == "claude-sonnet-4-5"


def test_an_alias_cannot_reach_two_routes() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(FIXTURES / "invalid_alias.yaml", env={})
    issues = [str(i) for i in info.value.issues]
    assert any("routes.claude.aliases[1]: 'gpt-4o' is already the route" in i for i in issues)
    assert any(
        "routes.gpt-4o.aliases[0]: 'claude-*' is already an alias of route 'claude'" in i
        for i in issues
    ), issues


def test_check_config_shows_the_names_in_matching_order() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "config/demo.yaml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stderr  # the CLI's words go to stderr
    lines = [line.split() for line in out.splitlines() if "→" in line]
    assert lines[0] == ["claude-*", "→", "claude-sonnet-4-5"]
    assert ["gpt-*", "→", "gpt-4o"] in lines
