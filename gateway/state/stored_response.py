"""One turn of a Responses conversation as the store keeps it (`gateway.state.responses`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_CHAIN = 1000  # turns of one conversation the gateway walks back


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    owner: str
    created_at: float
    previous_response_id: str | None
    input_items: list[dict[str, Any]]
    output_items: list[dict[str, Any]]
    response: dict[str, Any]
