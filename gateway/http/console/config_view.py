"""The running config as the console shows it, rendered by allow-list: a value is shown only
where its field is known to hold nothing secret — numbers, switches, fixed choices, names,
and URLs cut to scheme, host, port and path. Everything else is masked: SecretStr fields,
digests, every value under free-form maps (`params`, `env`, `headers`, `speculative`) and
argument lists (`extra_args`), URL userinfo, query strings and fragments. A field added to
the schema later is masked until it is listed here."""

from __future__ import annotations

import typing
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, SecretStr

from policies.schema import GatewayConfig

MASK = "********"
# Strings that name things, or say where files and hosts are: safe to show as they are.
_NAMES = frozenset(
    {"name", "team", "provider", "model", "host", "anthropic_version", "key_prefix",
     "journal_dir", "spool_path", "service_name", "timezone", "dns", "vllm", "model_path",
     "endpoint", "prompt"}
)  # fmt: skip
_NAME_LISTS = frozenset({"routes", "aliases", "forwarded_allow_ips", "volatile"})
_URLS = frozenset({"api_base", "url", "otlp_endpoint", "replicas"})


def masked_yaml(config: GatewayConfig) -> str:
    return yaml.safe_dump(_model(config), sort_keys=False, default_flow_style=False, width=100)


def _model(model: BaseModel) -> dict[str, Any]:
    shown: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if name not in model.model_fields_set and value == field.get_default(
            call_default_factory=True
        ):
            continue  # as the config left it: not worth a line
        literal = typing.get_origin(field.annotation) is typing.Literal
        shown[name] = _value(name, value, literal)
    return shown


def _value(name: str, value: Any, literal: bool = False) -> Any:
    if isinstance(value, BaseModel):
        return _model(value)
    if isinstance(value, dict):
        return {str(k): _member(name, v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_member(name, v) for v in value]
    return _scalar(name, value, literal)


def _member(name: str, value: Any) -> Any:
    """A map's value or a list's item: models (providers, routes, keys) opened; names in
    lists known to hold names; anything else masked."""
    if isinstance(value, BaseModel):
        return _model(value)
    if name in _URLS and isinstance(value, str):
        return _url(value)
    if name in _NAME_LISTS or isinstance(value, Enum):
        return _scalar(name, value, literal=True)
    return MASK


def _scalar(name: str, value: Any, literal: bool) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, str):
        if name in _URLS:
            return _url(value)
        if literal or name in _NAMES:
            return value
    return MASK


def _url(value: str) -> str:
    """Scheme, host, port and path: never userinfo, a query or a fragment."""
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return MASK
    if not parts.scheme:
        return MASK
    host = parts.hostname or ""
    where = f"{parts.scheme}://{host}{f':{port}' if port else ''}{parts.path}"
    if parts.username or parts.password:
        where = where.replace("://", f"://{MASK}@", 1)
    return where + (f"?{MASK}" if parts.query else "") + (f"#{MASK}" if parts.fragment else "")
