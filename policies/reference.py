"""The configuration reference, rendered from the YAML model itself: every key with its type,
default and description (the fields' own docstrings), one section per model. `make docs`
writes it to docs/reference/configuration.md; a test fails when that file is stale."""

from __future__ import annotations

import json
import sys
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from policies.schema import GatewayConfig

HEADER = """# Configuration reference

Generated from the pydantic models in `policies/` by `make docs` — do not edit by hand.
Every model forbids unknown keys; `${VAR}` and `${VAR:-default}` are substituted before
validation. The guide is in [Configuration](../configuration.md).
"""


@dataclass
class Section:
    model: type[BaseModel]
    paths: list[str] = field(default_factory=list)


def render() -> str:
    sections = _sections()
    anchors = {s.model: s.model.__name__.lower() for s in sections}
    out = [HEADER]
    for section in sections:
        out.append(_render_section(section, anchors))
    return "\n".join(out)


def _sections() -> list[Section]:
    found: dict[type[BaseModel], Section] = {}
    order: list[Section] = []

    def visit(model: type[BaseModel], path: str) -> None:
        if model in found:
            found[model].paths.append(path)
            return
        section = Section(model, [path])
        found[model] = section
        order.append(section)
        for name, info in model.model_fields.items():
            for child, suffix in _models_in(info.annotation):
                visit(child, f"{path}.{name}{suffix}" if path else f"{name}{suffix}")

    visit(GatewayConfig, "")
    return order


def _models_in(annotation: object, suffix: str = "") -> Iterator[tuple[type[BaseModel], str]]:
    """The models a field can hold, with how the path goes on to them (`[]`, `.<name>`)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation, suffix
    elif origin is typing.Annotated:
        yield from _models_in(args[0], suffix)
    elif origin in (list, tuple):
        yield from _models_in(args[0], suffix + "[]")
    elif origin is dict:
        yield from _models_in(args[1], suffix + ".<name>")
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            yield from _models_in(arg, suffix)


def _render_section(section: Section, anchors: dict[type[BaseModel], str]) -> str:
    model = section.model
    title = section.paths[0] or "top level"
    kind = _literal_kind(model)
    if kind:
        title += f" (kind: {kind})"
    heading = f"`{title}`" if section.paths[0] else "Top level"
    lines = [f"## {heading} {{#{anchors[model]}}}", ""]
    doc = (model.__doc__ or "").strip()
    if doc and not doc.startswith(("A base class", "Usage docs")):
        lines += [" ".join(doc.split()), ""]
    if len(section.paths) > 1:
        also = ", ".join(f"`{p}`" for p in section.paths[1:])
        lines += [f"Also at {also}.", ""]
    lines += ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name, info in model.model_fields.items():
        lines.append(
            f"| `{name}` | {_type_text(info.annotation, anchors)}{_bounds(info)} "
            f"| {_default_text(info)} | {_cell(info.description or '')} |"
        )
    return "\n".join(lines) + "\n"


def _literal_kind(model: type[BaseModel]) -> str | None:
    info = model.model_fields.get("kind")
    if info is not None and typing.get_origin(info.annotation) is typing.Literal:
        return str(typing.get_args(info.annotation)[0])
    return None


def _type_text(annotation: object, anchors: dict[type[BaseModel], str]) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{_literal_kind(annotation) or 'object'}](#{anchors[annotation]})"
    if annotation is SecretStr:
        return "secret string"
    if origin is typing.Literal:
        return " \\| ".join(f"`{json.dumps(a)}`" for a in args)
    if origin is typing.Annotated:
        return _type_text(args[0], anchors)
    if origin in (list, tuple):
        return f"list of {_type_text(args[0], anchors)}"
    if origin is dict:
        return f"map of {_type_text(args[1], anchors)}"
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_text(a, anchors) for a in args)
    names: dict[object, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
    return names.get(annotation) or str(getattr(annotation, "__name__", annotation))


def _bounds(info: FieldInfo) -> str:
    signs = {
        annotated_types.Ge: ("≥", "ge"),
        annotated_types.Gt: (">", "gt"),
        annotated_types.Le: ("≤", "le"),
        annotated_types.Lt: ("<", "lt"),
    }
    parts = []
    for item in info.metadata:
        for cls, (sign, attr) in signs.items():
            if isinstance(item, cls):
                parts.append(f"{sign} {getattr(item, attr)}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            parts.append(f"at least {item.min_length}")
    return f", {', '.join(parts)}" if parts else ""


def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    factory = info.default_factory
    value = factory() if factory is not None else info.default  # type: ignore[call-arg]
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "see its section"
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def main(argv: list[str]) -> int:
    """`python -m policies.reference FILE` writes the reference; without FILE, prints it."""
    text = render()
    if len(argv) > 1:
        Path(argv[1]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
