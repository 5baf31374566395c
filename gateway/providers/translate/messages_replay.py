"""Anthropic Messages, whole ↔ streamed: a whole message as the events that would have carried
it (`message_events`), and a stream's events gathered back into the whole message
(`MessageGatherer`). The response cache replays a stored answer to a streaming client and
stores a streamed one; `whole → events → gathered` gives the whole back. A block of a kind
this does not know is not replayed (None) and not gathered: such answers are not cached."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.providers.sse import data_of
from gateway.providers.translate.chat_form import sse

_TOOL_BLOCKS = ("tool_use", "server_tool_use")


def _block_events(index: int, block: dict[str, Any]) -> list[bytes] | None:
    kind = block.get("type")
    deltas: list[dict[str, Any]]
    if kind == "text":
        opened: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": block.get("text", "")}]
    elif kind in _TOOL_BLOCKS:
        opened = {**block, "input": {}}
        deltas = [
            {
                "type": "input_json_delta",
                "partial_json": orjson.dumps(block.get("input") or {}).decode(),
            }
        ]
    elif kind == "thinking":
        opened = {"type": "thinking", "thinking": ""}
        deltas = [{"type": "thinking_delta", "thinking": block.get("thinking", "")}]
        if block.get("signature"):
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "redacted_thinking":
        opened, deltas = block, []
    else:
        return None
    return [
        sse(("content_block_start",
             {"type": "content_block_start", "index": index, "content_block": opened})),
        *(sse(("content_block_delta", {"type": "content_block_delta", "index": index,
                                        "delta": d})) for d in deltas),
        sse(("content_block_stop", {"type": "content_block_stop", "index": index})),
    ]  # fmt: skip


def message_events(whole: dict[str, Any]) -> list[bytes] | None:
    """The events of `whole`, or None when it holds a block this cannot replay."""
    usage = dict(whole.get("usage") or {})
    started = {**whole, "content": [], "stop_reason": None, "stop_sequence": None,
               "usage": {**usage, "output_tokens": 0}}  # fmt: skip
    out = [sse(("message_start", {"type": "message_start", "message": started}))]
    for index, block in enumerate(whole.get("content") or []):
        events = _block_events(index, block)
        if events is None:
            return None
        out += events
    delta = {"stop_reason": whole.get("stop_reason"), "stop_sequence": whole.get("stop_sequence")}
    ended = {"type": "message_delta", "delta": delta,
             "usage": {"output_tokens": usage.get("output_tokens", 0)}}  # fmt: skip
    out.append(sse(("message_delta", ended)))
    out.append(sse(("message_stop", {"type": "message_stop"})))
    return out


class MessageGatherer:
    """A Messages stream's events, gathered as they pass; `whole()` once it ended cleanly."""

    def __init__(self) -> None:
        self._message: dict[str, Any] | None = None
        self._blocks: dict[int, dict[str, Any]] = {}
        self._json: dict[int, list[str]] = {}
        self._done = False
        self._unknown = False

    def see(self, event: bytes) -> None:
        payload = data_of(event.rstrip(b"\n"))
        if not payload or not payload.startswith(b"{"):
            return
        data = orjson.loads(payload)
        kind = data.get("type")
        if kind == "message_start":
            self._message = dict(data.get("message") or {})
        elif kind == "content_block_start":
            self._started(data.get("index", 0), dict(data.get("content_block") or {}))
        elif kind == "content_block_delta":
            self._delta(data.get("index", 0), data.get("delta") or {})
        elif kind == "message_delta" and self._message is not None:
            self._message.update(data.get("delta") or {})
            self._message["usage"] = {**(self._message.get("usage") or {}),
                                      **(data.get("usage") or {})}  # fmt: skip
        elif kind == "message_stop":
            self._done = True
        elif kind == "error":
            self._unknown = True

    def _started(self, index: int, block: dict[str, Any]) -> None:
        if block.get("type") not in ("text", "thinking", "redacted_thinking", *_TOOL_BLOCKS):
            self._unknown = True
        self._blocks[index] = block

    def _delta(self, index: int, delta: dict[str, Any]) -> None:
        block = self._blocks.get(index)
        if block is None:
            self._unknown = True
            return
        kind = delta.get("type")
        if kind == "text_delta":
            block["text"] = block.get("text", "") + delta.get("text", "")
        elif kind == "input_json_delta":
            self._json.setdefault(index, []).append(delta.get("partial_json", ""))
        elif kind == "thinking_delta":
            block["thinking"] = block.get("thinking", "") + delta.get("thinking", "")
        elif kind == "signature_delta":
            block["signature"] = delta.get("signature", "")
        else:
            self._unknown = True

    def whole(self) -> dict[str, Any] | None:
        """The message, or None: the stream did not end cleanly, or held what this cannot
        gather."""
        if not self._done or self._unknown or self._message is None:
            return None
        content = []
        for index, block in sorted(self._blocks.items()):
            if block.get("type") in _TOOL_BLOCKS:
                text = "".join(self._json.get(index, [])) or "{}"
                try:
                    block = {**block, "input": orjson.loads(text)}
                except orjson.JSONDecodeError:
                    return None
            content.append(block)
        return {**self._message, "content": content}
