"""One request as the ledger keeps it: a typed record, and the columns derived from its fields
(each field's type says the column's nullability; its `Col` says the SQL type and index).
No database library here: the request path builds rows without importing one."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any


@dataclass(frozen=True)
class Col:
    # The column's SQL type as both SQLite and PostgreSQL spell it: FLOAT, INTEGER, BIGINT,
    # BOOLEAN, TEXT or VARCHAR(n).
    sql: str
    index: bool = False
    unique: bool = False
    # The schema version that added the column (1: the first table), and the value a row
    # written before it takes.
    since: int = 1
    added_default: Any = None

    @property
    def added(self) -> bool:
        return self.since > 1


@dataclass(frozen=True, slots=True)
class LedgerRow:
    ts: Annotated[float, Col("FLOAT", index=True)]
    # Ours, unique per request; the client's x-request-id may repeat and is kept apart.
    uid: Annotated[str, Col("VARCHAR(64)", unique=True)]
    request_id: Annotated[str, Col("VARCHAR(128)")]
    # Only `ts` and `uid` are indexed: every index is paid on each insert, and reports scan a
    # time range anyway.
    key_name: Annotated[str | None, Col("VARCHAR(128)")]
    team: Annotated[str | None, Col("VARCHAR(128)")]
    route: Annotated[str | None, Col("VARCHAR(256)")]
    endpoint: Annotated[str, Col("VARCHAR(32)")]
    provider: Annotated[str | None, Col("VARCHAR(128)")]
    model: Annotated[str | None, Col("VARCHAR(256)")]
    status: Annotated[int, Col("INTEGER")]
    error_class: Annotated[str | None, Col("VARCHAR(64)")]
    stream: Annotated[bool, Col("BOOLEAN")]
    prompt_tokens: Annotated[int, Col("INTEGER")]
    cached_tokens: Annotated[int, Col("INTEGER")]
    cache_write_tokens: Annotated[int, Col("INTEGER")]
    completion_tokens: Annotated[int, Col("INTEGER")]
    reasoning_tokens: Annotated[int, Col("INTEGER")]
    cost_micro_usd: Annotated[int | None, Col("BIGINT")]  # None: the model's price is unknown
    latency_ms: Annotated[float, Col("FLOAT")]
    ttft_ms: Annotated[float | None, Col("FLOAT")]
    attempts: Annotated[int, Col("INTEGER")]
    attempts_detail: Annotated[str, Col("TEXT")]  # JSON: every attempt and skip
    fell_back: Annotated[bool, Col("BOOLEAN")]
    resumed: Annotated[bool, Col("BOOLEAN")]
    partial_stream: Annotated[bool, Col("BOOLEAN")]
    # Drill traffic: the x-spillover-drill scope and the faults injected ("f3:error", …).
    drill: Annotated[str | None, Col("VARCHAR(256)", since=2)]
    # Tokens estimated by the gateway: a stream cut (client gone, upstream broken) before the
    # upstream reported its usage. The provider billed something; this is our best count.
    usage_estimated: Annotated[bool, Col("BOOLEAN", since=3, added_default=False)]
    # The client's protocol: openai (chat, completions, embeddings) or anthropic (Messages).
    ingress: Annotated[str, Col("VARCHAR(16)", since=4, added_default="openai")]
    # The request's OpenTelemetry trace (32 hex digits), when tracing is on.
    trace_id: Annotated[str | None, Col("VARCHAR(32)", since=5)] = None
    # What a translated target served the request without ("thinking, tools[8] (web_search,
    # run by OpenAI)"): the client's own field names, bounded.
    dropped: Annotated[str | None, Col("VARCHAR(1024)", since=6)] = None
    # A stream that broke after output began and was finished by another target: that
    # target ("provider/model"); `provider`/`model` name the one that began it.
    resumed_by: Annotated[str | None, Col("VARCHAR(384)", since=6)] = None
    # The client's own id (x-client-request-id, or x-request-id): `request_id` is ours.
    client_request_id: Annotated[str | None, Col("VARCHAR(128)", since=7)] = None
    # Answered from the response cache (cost 0), and what the stored answer had cost.
    cache_hit: Annotated[bool, Col("BOOLEAN", since=9, added_default=False)] = False
    cache_saved_micro_usd: Annotated[int, Col("BIGINT", since=9, added_default=0)] = 0

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


COLUMN_SPECS = _columns()
COLUMNS = [name for name, _, _ in COLUMN_SPECS]
# A row spooled by an older gateway lacks the columns added since: their defaults.
ADDED_COLUMNS = {name: col.added_default for name, col, _ in COLUMN_SPECS if col.added}
