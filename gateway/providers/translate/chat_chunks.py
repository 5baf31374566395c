"""Reading OpenAI chat chunks, for the writers that turn a chat stream into another
protocol's events (Anthropic's, the Responses API's): the usage, the text and tool-call
deltas and the finish reason, each handed to the writer. Pure; no I/O."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

from gateway.providers.base import Usage

Event = tuple[str, dict[str, Any]]  # (event name, data)


class ChatChunkWriter(ABC):
    def __init__(self) -> None:
        self.usage = Usage()
        self._finish: str | None = None  # the chat finish_reason, once seen

    def feed(self, chunk: dict[str, Any]) -> Iterator[Event]:
        """The events one parsed chat chunk becomes."""
        yield from self._begin()
        if chunk.get("usage"):
            self.usage = Usage.from_openai(chunk["usage"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                yield from self._text(delta["content"])
            for call in delta.get("tool_calls") or []:
                yield from self._tool_call(call)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]

    @abstractmethod
    def _begin(self) -> Iterator[Event]:
        """The opening events, the first time only."""

    @abstractmethod
    def _text(self, text: str) -> Iterator[Event]: ...

    @abstractmethod
    def _tool_call(self, call: dict[str, Any]) -> Iterator[Event]:
        """One `tool_calls` delta (its `index` says which call)."""
