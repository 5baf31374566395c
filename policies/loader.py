"""Load a config file: YAML with `${VAR}` / `${VAR:-default}`, strict validation, and every
error reported as `file:line:column: path: message`."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from policies.schema import GatewayConfig

M = TypeVar("M", bound=BaseModel)

_VAR = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

PathKey = str | int


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.column}: {where}{self.message}"


class ConfigError(Exception):
    """The config is invalid; `issues` lists every problem with its position."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> GatewayConfig:
    text = Path(path).read_text(encoding="utf-8")
    return parse_config(text, str(path), os.environ if env is None else env)


def load_model(path: str | Path, model: type[M]) -> M:
    """Any strict model from a YAML file (drill scenarios), with the same positioned errors."""
    text = Path(path).read_text(encoding="utf-8")
    root, data = _document(text, str(path), os.environ)
    return _validate(root, data, str(path), model)


def parse_config(text: str, filename: str, env: Mapping[str, str]) -> GatewayConfig:
    root, data = _document(text, filename, env)
    config = _validate(root, data, filename, GatewayConfig)
    issues = [_issue_at(root, filename, loc, msg) for loc, msg in _cross_references(config)]
    if issues:
        raise ConfigError(issues)
    return config


def _document(text: str, filename: str, env: Mapping[str, str]) -> tuple[yaml.Node, Any]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError(
            [ConfigIssue(filename, line, col, "", f"YAML syntax: {exc.problem or exc}")]
        ) from None
    if root is None:
        raise ConfigError([ConfigIssue(filename, 1, 1, "", "the file is empty")])

    issues = list(_interpolate(root, env, filename))
    if issues:
        raise ConfigError(issues)
    data = yaml.SafeLoader(text).construct_document(root)
    if not isinstance(data, dict):
        raise ConfigError([_issue_at(root, filename, (), "the top level must be a mapping")])
    return root, data


def _validate(root: yaml.Node, data: Any, filename: str, model: type[M]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [
                _issue_at(
                    root, filename, _loc(e), _message(e), at_key=e["type"] == "extra_forbidden"
                )
                for e in exc.errors()
            ]
        ) from None


def _interpolate(node: yaml.Node, env: Mapping[str, str], filename: str) -> Iterator[ConfigIssue]:
    """Substitute `${VAR}` in scalar values in place; `$${` stays a literal `${`."""
    if isinstance(node, yaml.ScalarNode):
        if "${" not in node.value:
            return
        missing: list[str] = []

        def sub(m: re.Match[str]) -> str:
            escaped, name, default = m.group(1), m.group(2), m.group(3)
            if escaped:
                return m.group(0)[1:]
            value = env.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    missing.append(name)
                    return ""
                return default
            return value

        node.value = _VAR.sub(sub, node.value)
        for name in missing:
            yield ConfigIssue(
                filename,
                node.start_mark.line + 1,
                node.start_mark.column + 1,
                "",
                f"environment variable {name} is not set (use ${{{name}:-default}} for a default)",
            )
    elif isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    yield ConfigIssue(
                        filename,
                        key.start_mark.line + 1,
                        key.start_mark.column + 1,
                        "",
                        f"duplicate key {key.value!r}",
                    )
                seen.add(key.value)
            yield from _interpolate(value, env, filename)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _interpolate(item, env, filename)


def _issue_at(
    root: yaml.Node,
    filename: str,
    loc: tuple[PathKey, ...],
    message: str,
    at_key: bool = False,
) -> ConfigIssue:
    node, walked = _find(root, loc, at_key)
    return ConfigIssue(
        filename,
        node.start_mark.line + 1,
        node.start_mark.column + 1,
        _dotted(walked if len(walked) >= len(_clean(loc)) else _clean(loc)),
        message,
    )


def _find(
    root: yaml.Node, loc: tuple[PathKey, ...], at_key: bool
) -> tuple[yaml.Node, list[PathKey]]:
    """The deepest node along `loc`; parts that are not in the document (such as a union's
    tag that pydantic adds) are skipped. A missing key reports at its parent mapping."""
    node, walked = root, []
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            hit = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if hit is None:
                continue
            key_node, value_node = hit
            node = key_node if at_key and part == loc[-1] else value_node
            walked.append(part)
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            node = node.value[part]
            walked.append(part)
    return node, walked


def _clean(loc: tuple[PathKey, ...]) -> list[PathKey]:
    return [p for p in loc if p not in ("openai", "anthropic", "litellm")]


def _dotted(parts: list[PathKey]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _loc(error: Any) -> tuple[PathKey, ...]:
    loc = tuple(error["loc"])
    return (*loc, "kind") if error["type"] == "union_tag_invalid" else loc


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown kind {error['ctx']['tag']!r} (expected {error['ctx']['expected_tags']})"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")


def _cross_references(config: GatewayConfig) -> Iterator[tuple[tuple[PathKey, ...], str]]:
    known = sorted(config.providers)
    for route_name, route in config.routes.items():
        larger = route.on_context_too_long
        if larger is not None and larger.provider not in config.providers:
            yield (
                ("routes", route_name, "on_context_too_long", "provider"),
                f"unknown provider {larger.provider!r} (known: {', '.join(known)})",
            )
        for i, target in enumerate(route.targets):
            if target.provider not in config.providers:
                yield (
                    ("routes", route_name, "targets", i, "provider"),
                    f"unknown provider {target.provider!r} (known: {', '.join(known)})",
                )
    yield from _alias_collisions(config)
    yield from _too_wide(config)
    seen_names: set[str] = set()
    for i, key in enumerate(config.keys):
        if key.name in seen_names:
            yield ("keys", i, "name"), f"duplicate key name {key.name!r}"
        seen_names.add(key.name)
        for j, route_name in enumerate(key.routes or []):
            if route_name not in config.routes:
                yield ("keys", i, "routes", j), f"unknown route {route_name!r}"


# The widest name each store holds (the ledger's columns, less the room a prefix takes:
# `team:` / `key:` on stored responses' owners, `console-drill:` on a drill's key name).
NAME_WIDTHS = {"key": 100, "team": 100, "provider": 100, "route": 200, "model": 200}


def _too_wide(config: GatewayConfig) -> Iterator[tuple[tuple[PathKey, ...], str]]:
    """Names past what the ledger and the response store can hold: a row that a database
    refuses would otherwise wait in the journal for ever."""
    named: list[tuple[tuple[PathKey, ...], str, str]] = []
    named += [(("providers", name), "provider", name) for name in config.providers]
    named += [(("teams", name), "team", name) for name in config.teams]
    for name, route in config.routes.items():
        named.append((("routes", name), "route", name))
        named += [(("routes", name, "targets", i, "model"), "model", target.model)
                  for i, target in enumerate(route.targets)]  # fmt: skip
    for i, key in enumerate(config.keys):
        named.append((("keys", i, "name"), "key", key.name))
        if key.team is not None:
            named.append((("keys", i, "team"), "team", key.team))
    for where, kind, name in named:
        if len(name) > NAME_WIDTHS[kind]:
            yield where, f"{kind} name longer than {NAME_WIDTHS[kind]} characters"


def _alias_collisions(config: GatewayConfig) -> Iterator[tuple[tuple[PathKey, ...], str]]:
    """A model name reaches one route: an alias may not repeat a route's name, or another
    alias or pattern (of this route or another)."""
    owner: dict[str, str] = {name: name for name in config.routes}
    for route_name, route in config.routes.items():
        for j, alias in enumerate(route.aliases):
            taken = owner.get(alias)
            if taken is not None:
                what = "the route" if taken == alias else f"an alias of route {taken!r}"
                yield ("routes", route_name, "aliases", j), f"{alias!r} is already {what}"
            owner.setdefault(alias, route_name)
