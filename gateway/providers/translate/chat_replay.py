"""OpenAI chat completions, whole ↔ streamed: a whole completion as the chunks that would have
carried it (`chat_events`), and a stream's chunks gathered back into the whole completion
(`ChatGatherer`). The response cache replays a stored answer to a streaming client and
stores a streamed one; `whole → events → gathered` gives the whole back."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.providers.sse import data_of

DONE = b"data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def chat_events(whole: dict[str, Any], with_usage: bool) -> list[bytes]:
    """The chunks of `whole`: per choice, its message in one delta, then its finish reason;
    the usage chunk when the client asked for it (`stream_options.include_usage`); [DONE]."""
    base = {
        "id": whole.get("id", ""),
        "object": "chat.completion.chunk",
        "created": whole.get("created", 0),
        "model": whole.get("model", ""),
    }
    if whole.get("system_fingerprint"):
        base["system_fingerprint"] = whole["system_fingerprint"]
    out = []
    for choice in whole.get("choices") or []:
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": message.get("role", "assistant")}
        for name in ("content", "reasoning_content", "refusal"):
            if message.get(name) is not None:
                delta[name] = message[name]
        if message.get("tool_calls"):
            delta["tool_calls"] = [
                {"index": i, **call} for i, call in enumerate(message["tool_calls"])
            ]
        index = choice.get("index", 0)
        out.append(
            _event(
                {
                    **base,
                    "choices": [
                        {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
                    ],
                }
            )
        )
        out.append(_event({**base, "choices": [
            {"index": index, "delta": {}, "logprobs": None,
             "finish_reason": choice.get("finish_reason")}]}))  # fmt: skip
    if with_usage and whole.get("usage"):
        out.append(_event({**base, "choices": [], "usage": whole["usage"]}))
    out.append(DONE)
    return out


class _Choice:
    def __init__(self) -> None:
        self.role = "assistant"
        self.parts: dict[str, list[str]] = {}
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None

    def see(self, delta: dict[str, Any]) -> None:
        self.role = delta.get("role") or self.role
        for name in ("content", "reasoning_content", "refusal"):
            if isinstance(delta.get(name), str):
                self.parts.setdefault(name, []).append(delta[name])
        for call in delta.get("tool_calls") or []:
            known = self.calls.setdefault(
                call.get("index", 0), {"id": "", "type": "function", "name": "", "args": []}
            )
            known["id"] = call.get("id") or known["id"]
            known["type"] = call.get("type") or known["type"]
            function = call.get("function") or {}
            known["name"] += function.get("name") or ""
            known["args"].append(function.get("arguments") or "")

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": None}
        for name, parts in self.parts.items():
            message[name] = "".join(parts)
        if self.calls:
            message["tool_calls"] = [
                {"id": c["id"], "type": c["type"],
                 "function": {"name": c["name"], "arguments": "".join(c["args"])}}
                for _, c in sorted(self.calls.items())
            ]  # fmt: skip
        return message


class ChatGatherer:
    """A chat stream's chunks, gathered as they pass; `whole()` once it ended cleanly."""

    def __init__(self) -> None:
        self._head: dict[str, Any] | None = None
        self._choices: dict[int, _Choice] = {}
        self._usage: dict[str, Any] | None = None
        self._done = False

    def see(self, event: bytes) -> None:
        payload = data_of(event.rstrip(b"\n"))
        if not payload:
            return
        if payload == b"[DONE]":
            self._done = True
            return
        chunk = orjson.loads(payload)
        if self._head is None:
            self._head = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint")
                          if chunk.get(k) is not None}  # fmt: skip
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            seen = self._choices.setdefault(choice.get("index", 0), _Choice())
            seen.see(choice.get("delta") or {})
            seen.finish_reason = choice.get("finish_reason") or seen.finish_reason

    def whole(self) -> dict[str, Any] | None:
        """The completion, or None: the stream did not end with every choice finished."""
        choices = self._choices
        if not self._done or self._head is None or not choices:
            return None
        if any(c.finish_reason is None for c in choices.values()):
            return None
        whole: dict[str, Any] = {
            **self._head,
            "object": "chat.completion",
            "choices": [
                {"index": i, "message": c.message(), "logprobs": None,
                 "finish_reason": c.finish_reason}
                for i, c in sorted(choices.items())
            ],
        }  # fmt: skip
        if self._usage is not None:
            whole["usage"] = self._usage
        return whole
