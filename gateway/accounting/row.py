"""One request as the ledger keeps it: a typed record, and the table derived from its fields
(each field's type says the column's nullability; its `Col` says the SQL type and index)."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any

from sqlalchemy import BigInteger, Boolean, Column, Float, Integer, MetaData, String, Table, Text
from sqlalchemy.sql.expression import false
from sqlalchemy.types import TypeEngine


@dataclass(frozen=True)
class Col:
    sql: TypeEngine[Any] | type[TypeEngine[Any]]
    index: bool = False
    unique: bool = False
    # A column added by a later schema version, and the value a row written before it takes.
    added: bool = False
    added_default: Any = None


@dataclass(frozen=True, slots=True)
class LedgerRow:
    ts: Annotated[float, Col(Float, index=True)]
    # Ours, unique per request; the client's x-request-id may repeat and is kept apart.
    uid: Annotated[str, Col(String(64), unique=True)]
    request_id: Annotated[str, Col(String(128))]
    # Only `ts` and `uid` are indexed: every index is paid on each insert, and reports scan a
    # time range anyway.
    key_name: Annotated[str | None, Col(String(128))]
    team: Annotated[str | None, Col(String(128))]
    route: Annotated[str | None, Col(String(256))]
    endpoint: Annotated[str, Col(String(32))]
    provider: Annotated[str | None, Col(String(128))]
    model: Annotated[str | None, Col(String(256))]
    status: Annotated[int, Col(Integer)]
    error_class: Annotated[str | None, Col(String(64))]
    stream: Annotated[bool, Col(Boolean)]
    prompt_tokens: Annotated[int, Col(Integer)]
    cached_tokens: Annotated[int, Col(Integer)]
    cache_write_tokens: Annotated[int, Col(Integer)]
    completion_tokens: Annotated[int, Col(Integer)]
    reasoning_tokens: Annotated[int, Col(Integer)]
    cost_micro_usd: Annotated[int | None, Col(BigInteger)]  # None: the model's price is unknown
    latency_ms: Annotated[float, Col(Float)]
    ttft_ms: Annotated[float | None, Col(Float)]
    attempts: Annotated[int, Col(Integer)]
    attempts_detail: Annotated[str, Col(Text)]  # JSON: every attempt and skip
    fell_back: Annotated[bool, Col(Boolean)]
    resumed: Annotated[bool, Col(Boolean)]
    partial_stream: Annotated[bool, Col(Boolean)]
    # Drill traffic: the x-spillover-drill scope and the faults injected ("f3:error", …).
    drill: Annotated[str | None, Col(String(256), added=True)]
    # Tokens estimated by the gateway: a stream cut (client gone, upstream broken) before the
    # upstream reported its usage. The provider billed something; this is our best count.
    usage_estimated: Annotated[bool, Col(Boolean, added=True, added_default=False)]
    # The client's protocol: openai (chat, completions, embeddings) or anthropic (Messages).
    ingress: Annotated[str, Col(String(16), added=True, added_default="openai")]
    # The request's OpenTelemetry trace (32 hex digits), when tracing is on.
    trace_id: Annotated[str | None, Col(String(32), added=True)] = None

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in COLUMNS}


def _columns() -> list[tuple[str, Col, bool]]:
    hints = typing.get_type_hints(LedgerRow, include_extras=True)
    out = []
    for field in dataclasses.fields(LedgerRow):
        hint = hints[field.name]
        base, col = typing.get_args(hint)
        nullable = type(None) in typing.get_args(base) and typing.get_origin(base) in (
            typing.Union,
            types.UnionType,
        )
        out.append((field.name, col, nullable))
    return out


def table_for(metadata: MetaData) -> Table:
    columns: list[Column[Any]] = [
        Column(
            "id",
            BigInteger().with_variant(Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        )
    ]
    for name, col, nullable in _COLUMN_SPECS:
        extra: dict[str, Any] = {}
        if col.added and col.added_default is False:
            extra["server_default"] = false()
        elif col.added and isinstance(col.added_default, str):
            extra["server_default"] = col.added_default
        columns.append(
            Column(name, col.sql, nullable=nullable, index=col.index, unique=col.unique, **extra)
        )
    return Table("spillover_ledger", metadata, *columns)


_COLUMN_SPECS = _columns()
COLUMNS = [name for name, _, _ in _COLUMN_SPECS]
# A row spooled by an older gateway lacks the columns added since: their defaults.
ADDED_COLUMNS = {name: col.added_default for name, col, _ in _COLUMN_SPECS if col.added}
