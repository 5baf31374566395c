"""OpenAI Responses, whole ↔ streamed: a whole Response as the events that would have carried
it (`response_events`, with sequence numbers), and a stream gathered back into the whole
Response (`ResponsesGatherer`: its last event, `response.completed` or `response.incomplete`
— cut at the output limit — carries it). The response cache replays a stored answer to a
streaming client and stores a streamed one; a failed Response is neither."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.providers.sse import data_of
from gateway.providers.translate.chat_form import sse


class _Events:
    def __init__(self) -> None:
        self.out: list[bytes] = []

    def add(self, name: str, **data: Any) -> None:
        self.out.append(sse((name, {"type": name, "sequence_number": len(self.out), **data})))


def _message(events: _Events, index: int, item: dict[str, Any]) -> None:
    item_id = item.get("id", "")
    where = {"item_id": item_id, "output_index": index}
    events.add("response.output_item.added", output_index=index,
               item={**item, "status": "in_progress", "content": []})  # fmt: skip
    for part_index, part in enumerate(item.get("content") or []):
        at = {**where, "content_index": part_index}
        if part.get("type") == "output_text":
            events.add("response.content_part.added", **at,
                       part={**part, "text": "", "annotations": []})  # fmt: skip
            events.add("response.output_text.delta", **at, delta=part.get("text", ""),
                       logprobs=[])  # fmt: skip
            events.add("response.output_text.done", **at, text=part.get("text", ""),
                       logprobs=[])  # fmt: skip
        elif part.get("type") == "refusal":
            events.add("response.content_part.added", **at, part={**part, "refusal": ""})
            events.add("response.refusal.delta", **at, delta=part.get("refusal", ""))
            events.add("response.refusal.done", **at, refusal=part.get("refusal", ""))
        else:
            events.add("response.content_part.added", **at, part=part)
        events.add("response.content_part.done", **at, part=part)
    events.add("response.output_item.done", output_index=index, item=item)


def _function_call(events: _Events, index: int, item: dict[str, Any]) -> None:
    where = {"item_id": item.get("id", ""), "output_index": index}
    events.add("response.output_item.added", output_index=index,
               item={**item, "arguments": "", "status": "in_progress"})  # fmt: skip
    arguments = item.get("arguments", "")
    events.add("response.function_call_arguments.delta", **where, delta=arguments)
    events.add("response.function_call_arguments.done", **where, arguments=arguments)
    events.add("response.output_item.done", output_index=index, item=item)


_ENDED = {"completed": "response.completed", "incomplete": "response.incomplete"}


def response_events(whole: dict[str, Any]) -> list[bytes] | None:
    """The events of a Response that ended (completed, or incomplete at the output limit);
    None for any other."""
    last = _ENDED.get(whole.get("status", ""))
    if last is None:
        return None
    events = _Events()
    opening = {**whole, "status": "in_progress", "output": [], "usage": None}
    events.add("response.created", response=opening)
    events.add("response.in_progress", response=opening)
    for index, item in enumerate(whole.get("output") or []):
        kind = item.get("type")
        if kind == "message":
            _message(events, index, item)
        elif kind == "function_call":
            _function_call(events, index, item)
        else:  # reasoning and the rest: whole, as added and as done
            events.add("response.output_item.added", output_index=index, item=item)
            events.add("response.output_item.done", output_index=index, item=item)
    events.add(last, response=whole)
    return events.out


class ResponsesGatherer:
    """A Responses stream, gathered as it passes: its completed Response."""

    def __init__(self) -> None:
        self._whole: dict[str, Any] | None = None

    def see(self, event: bytes) -> None:
        payload = data_of(event.rstrip(b"\n"))
        if not payload or not (
            b"response.completed" in payload or b"response.incomplete" in payload
        ):
            return
        data = orjson.loads(payload)
        if data.get("type") in _ENDED.values():
            self._whole = data.get("response")

    def whole(self) -> dict[str, Any] | None:
        whole = self._whole
        return whole if whole is not None and whole.get("status") in _ENDED else None
