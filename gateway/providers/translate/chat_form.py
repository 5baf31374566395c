"""The chat form — OpenAI chat completions — as the other client protocols' translators
meet it: a request translated into it with what it could not carry (`Translated`), and its
stream read back chunk by chunk by the writers of another protocol's events
(`ChatChunkWriter`: the usage, the text and tool-call deltas, the finish reason). Pure."""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from gateway.providers.base import Usage

Event = tuple[str, dict[str, Any]]  # (event name, data)


def random_id(prefix: str) -> str:
    """An id a client is given (a response's, an item's): random, so none can be guessed."""
    return prefix + secrets.token_hex(16)


def sse(event: Event) -> bytes:
    """A named server-sent event, as Anthropic and the Responses API write them."""
    name, data = event
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# What a translation leaves out, by what the answer loses without it (the docs' table):
# - advisory: the answer is still correct without it (thinking settings, context management,
#   metadata, reasoning items only their own model can read) — dropped and reported;
# - hosted: a tool only a provider runs (web search) or its calls in the history — dropped
#   and reported unless the route says `hosted_tools: reject`;
# - essential: the request means something else without it (a document, a file, a tool
#   with no schema, a field this gateway does not know) — the route's `untranslatable`.
OmissionKind = Literal["advisory", "hosted", "essential"]


# The client's reasoning settings (Anthropic's `thinking` / `output_config`, Responses'
# `reasoning.effort`): carried as `reasoning_effort` to a target that reasons, dropped
# (advisory) for any other — a model that does not reason refuses the parameter.
REASONING_SETTINGS = frozenset({"thinking", "output_config", "reasoning.effort"})


@dataclass(frozen=True, slots=True)
class Omission:
    where: str  # "top_k", "messages[2].content[0] (document)"
    kind: OmissionKind


@dataclass(frozen=True, slots=True)
class ClientTool:
    """A client's tool as a chat function tool stands for it: its own name and namespace,
    and whether it takes free-form input (a custom tool, carried as `{"input": "…"}`)."""

    name: str
    namespace: str | None = None
    custom: bool = False


@dataclass(slots=True)
class Translated:
    """A chat completions request, and what of the client's request it could not carry,
    each named by where it was and classed by what the answer loses without it.
    `tool_names`: chat function names that stand for namespaced or custom tools, to be told
    back to the client as its own."""

    body: dict[str, Any]
    left_out: list[Omission] = field(default_factory=list)
    tool_names: dict[str, ClientTool] = field(default_factory=dict)
    # The client's reasoning settings as an OpenAI effort, for a target that reasons.
    reasoning_effort: str | None = None

    def names(self, kind: OmissionKind | None = None) -> list[str]:
        return [o.where for o in self.left_out if kind is None or o.kind == kind]


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
