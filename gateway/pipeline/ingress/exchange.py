"""A Responses request as the gateway keeps it for its conversation: what the ingress read
(`openai_responses.py`) and the answer's way into the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.providers.translate.chat_form import ClientTool
from gateway.state.stored_response import StoredResponse


@dataclass(slots=True)
class Exchange:
    """One Responses request as the gateway keeps it: its id, owner and input items."""

    body: dict[str, Any]
    response_id: str
    owner: str
    items: list[dict[str, Any]]
    created_at: int
    # Chat function names that stand for the client's namespaced tools (translated targets).
    tool_names: dict[str, ClientTool] = field(default_factory=dict)

    @property
    def store(self) -> bool:
        return self.body.get("store") is not False

    def stored(self, response: dict[str, Any]) -> StoredResponse:
        return StoredResponse(
            id=self.response_id,
            owner=self.owner,
            created_at=float(self.created_at),
            previous_response_id=self.body.get("previous_response_id"),
            input_items=self.items,
            output_items=list(response.get("output") or []),
            response=response,
        )
