"""Config loading: interpolation, strictness, and line-numbered errors for every mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from policies.loader import ConfigError, load_config, parse_config
from policies.schema import AnthropicProvider, OpenAIProvider

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "config"
ROOT = FIXTURES.parent.parent.parent


def test_valid_minimal_with_env_defaults() -> None:
    config = load_config(FIXTURES / "valid_minimal.yaml", env={"APP_KEY": "sk-app"})
    primary = config.providers["primary"]
    assert isinstance(primary, OpenAIProvider)
    assert primary.api_key is not None and primary.api_key.get_secret_value() == "none"
    assert isinstance(config.providers["claude"], AnthropicProvider)
    assert [t.provider for t in config.routes["gpt-4o"].targets] == ["primary", "claude"]
    assert config.keys[0].key is not None and config.keys[0].key.get_secret_value() == "sk-app"
    assert config.server.max_body_bytes == 8 * 1024 * 1024


def test_env_value_wins_over_default_and_escape_stays_literal() -> None:
    text = """
providers:
  p: {kind: openai, api_base: "${BASE:-http://default}", headers: {x-tmpl: "$${NOT_A_VAR}"}}
routes: {m: {targets: [{provider: p, model: x}]}}
keys: [{name: a, key: "${K}"}]
"""
    config = parse_config(text, "inline.yaml", {"BASE": "http://from-env", "K": "s"})
    provider = config.providers["p"]
    assert provider.api_base == "http://from-env"
    assert provider.headers == {"x-tmpl": "${NOT_A_VAR}"}


def test_shipped_configs_are_valid() -> None:
    for name in ("demo.yaml", "example.yaml"):
        load_config(
            ROOT / "config" / name,
            env={"OPENAI_API_KEY": "a", "ANTHROPIC_API_KEY": "b", "SEARCH_APP_KEY": "c"},
        )


def _issues(name: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(FIXTURES / name, env={})
    return [str(i) for i in info.value.issues]


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("invalid_unknown_key.yaml", ["invalid_unknown_key.yaml:3:3: server.prot: unknown key"]),
        (
            "invalid_unknown_provider.yaml",
            [
                "invalid_unknown_provider.yaml:7:20: routes.m.targets[1].provider: unknown provider "
                "'secondary' (known: primary)"
            ],
        ),
        (
            "invalid_kind.yaml",
            [
                "invalid_kind.yaml:3:11: providers.primary.kind: unknown kind 'openia' (expected "
                "'openai', 'anthropic', 'litellm', 'vllm_pool')"
            ],
        ),
        (
            "invalid_types.yaml",
            [
                "invalid_types.yaml:2:9: server.port: Input should be a valid integer, unable to parse "
                "string as an integer",
                "invalid_types.yaml:7:14: routes.m.targets: List should have at least 1 item after "
                "validation, not 0",
                "invalid_types.yaml:9:5: keys[0]: give exactly one of 'key' or 'key_sha256'",
            ],
        ),
        (
            "invalid_missing_env.yaml",
            [
                "invalid_missing_env.yaml:4:14: environment variable DEFINITELY_UNSET_VAR_FOR_TESTS is "
                "not set (use ${DEFINITELY_UNSET_VAR_FOR_TESTS:-default} for a default)"
            ],
        ),
        (
            "invalid_yaml_syntax.yaml",
            ["invalid_yaml_syntax.yaml:3:7: YAML syntax: expected ',' or '}', but got ':'"],
        ),
        ("invalid_duplicate_key.yaml", ["invalid_duplicate_key.yaml:5:3: duplicate key 'm'"]),
    ],
)
def test_invalid_configs_name_file_line_column_and_key(fixture: str, expected: list[str]) -> None:
    issues = _issues(fixture)
    assert len(issues) == len(expected), issues
    for got, want in zip(issues, expected, strict=True):
        assert got.endswith(want) or want in got, (got, want)


def test_check_config_cli_exit_codes() -> None:
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "check-config",
            str(FIXTURES / "invalid_unknown_provider.yaml"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 1
    assert "invalid_unknown_provider.yaml:7:20" in bad.stderr
    assert "unknown provider 'secondary'" in bad.stderr
    good = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", str(FIXTURES / "valid_minimal.yaml")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"APP_KEY": "x", "PATH": "/usr/bin"},
    )
    assert good.returncode == 0, good.stderr
    assert "1 routes" in good.stderr


def test_the_widest_names_a_config_holds_fit_every_store() -> None:
    """What the loader refuses past NAME_WIDTHS is what the ledger and the response store
    can hold, prefixes included."""
    from gateway.accounting.tables import ledger_table
    from gateway.state.responses_sql import responses_table
    from policies.loader import NAME_WIDTHS

    def width(table: object, column: str) -> int:
        return int(table.c[column].type.length)  # type: ignore[attr-defined]

    assert width(ledger_table, "key_name") >= len("console-drill:") + NAME_WIDTHS["key"]
    assert width(ledger_table, "team") >= NAME_WIDTHS["team"]
    assert width(ledger_table, "provider") >= NAME_WIDTHS["provider"]
    assert width(ledger_table, "route") >= NAME_WIDTHS["route"]
    assert width(ledger_table, "model") >= NAME_WIDTHS["model"]
    assert width(ledger_table, "resumed_by") >= NAME_WIDTHS["provider"] + 1 + NAME_WIDTHS["model"]
    owners = max(NAME_WIDTHS["team"] + len("team:"), NAME_WIDTHS["key"] + len("key:"))
    assert width(responses_table, "owner") >= owners
