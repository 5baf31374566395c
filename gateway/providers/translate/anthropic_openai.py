"""Anthropic Messages ⇄ OpenAI chat completions, for Anthropic clients served by OpenAI-wire
targets: the request into chat completions, the answer and its stream back into Anthropic's
message and event sequence. Pure functions and one small state machine; no I/O.

What chat completions cannot say is left out of the translation and named in
`Translated.left_out`, classed (`chat_form.OmissionKind`): advisory — `thinking` and
`output_config` (settings of Anthropic's own reasoning), `context_management`, `top_k`,
thinking blocks in the history (only Anthropic can check their signatures); hosted — server
tools (web search and the like) and their blocks; essential — document blocks, Files API
images, Anthropic-defined client tools with no schema (bash, text editor, computer), fields
this translator does not know. `tool_result` with `is_error` keeps its text; chat
completions has no error flag.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import orjson

from gateway.errors import UpstreamBadRequest
from gateway.providers.base import Usage
from gateway.providers.translate.chat_form import (
    ChatChunkWriter,
    Event,
    Omission,
    OmissionKind,
    Translated,
)
from gateway.providers.translate.chat_form import sse as sse  # its event form, for callers

_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def stop_reason(finish_reason: str | None) -> str | None:
    return _STOP.get(finish_reason, "end_turn") if finish_reason else None


# --- request -------------------------------------------------------------------------

# The top-level fields chat completions can say; any other is left out (and named).
TRANSLATED_FIELDS = frozenset(
    {"model", "messages", "system", "max_tokens", "metadata", "stop_sequences", "stream",
     "temperature", "top_p", "tools", "tool_choice"}
)  # fmt: skip
# Fields an answer is still right without: Anthropic's own reasoning and context settings,
# sampling and serving hints. Every other untranslated field is essential.
ADVISORY_FIELDS = frozenset(
    {"thinking", "output_config", "context_management", "top_k", "service_tier",
     "inference_geo", "cache_control"}
)  # fmt: skip
ADVISORY_BLOCKS = frozenset({"thinking", "redacted_thinking"})
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high"}


def reasoning_effort(body: dict[str, Any]) -> str | None:
    """An OpenAI reasoning effort for the request's thinking settings: `output_config.effort`
    when set, else a thinking budget's size (below 4k tokens low, below 16k medium, else
    high); None when thinking is off or says nothing of its effort."""
    config = body.get("output_config")
    effort = config.get("effort") if isinstance(config, dict) else None
    if isinstance(effort, str) and effort in _EFFORTS:
        return _EFFORTS[effort]
    thinking = body.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    if thinking and thinking.get("type") == "enabled" and isinstance(budget, int):
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    return None


# Blocks of tools that Anthropic runs itself (their calls and results in the history).
HOSTED_BLOCKS = frozenset(
    {"server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
     "code_execution_tool_result", "bash_code_execution_tool_result",
     "text_editor_code_execution_tool_result", "mcp_tool_use", "mcp_tool_result",
     "container_upload", "tool_search_tool_result"}
)  # fmt: skip
HOSTED_TOOL_PREFIXES = ("web_search", "web_fetch", "code_execution", "mcp_toolset", "tool_search")


def block_kind(kind: Any) -> OmissionKind:
    if kind in ADVISORY_BLOCKS:
        return "advisory"
    return "hosted" if kind in HOSTED_BLOCKS else "essential"


def request_to_openai(body: dict[str, Any], model: str) -> Translated:
    out: dict[str, Any] = {"model": model}
    walk = _Walk()
    messages: list[dict[str, Any]] = []
    system = walk.system_parts(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(body.get("messages") or []):
        messages.extend(walk.message(message, f"messages[{i}]"))
    out["messages"] = messages
    if body.get("max_tokens") is not None:
        out["max_tokens"] = body["max_tokens"]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = list(body["stop_sequences"])
    user = (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str) and user:
        out["user"] = user
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    tools = [t for i, t in enumerate(body.get("tools") or []) if walk.tool_kept(t, i)]
    if tools:
        out["tools"] = [_tool(t) for t in tools]
        choice = body.get("tool_choice")
        if choice:
            out.update(_tool_choice(choice))
    for name in body:
        if name not in TRANSLATED_FIELDS and not _says_nothing(name, body[name]):
            walk.omit(name, "advisory" if name in ADVISORY_FIELDS else "essential")
    return Translated(out, walk.left_out, reasoning_effort=reasoning_effort(body))


def _says_nothing(name: str, value: Any) -> bool:
    """Fields whose value asks nothing of the model (thinking turned off, and the like)."""
    if value is None:
        return True
    return name == "thinking" and isinstance(value, dict) and value.get("type") == "disabled"


class _Walk:
    """Turns Anthropic messages into chat messages, noting what it has to leave out."""

    def __init__(self) -> None:
        self.left_out: list[Omission] = []

    def omit(self, where: str, kind: OmissionKind) -> None:
        self.left_out.append(Omission(where, kind))

    def system_parts(self, system: Any) -> list[dict[str, Any]]:
        if not system:
            return []
        if isinstance(system, str):
            return [{"type": "text", "text": system}]
        parts = []
        for j, block in enumerate(system):
            if block.get("type") == "text":
                parts.append(_text_part(block))
            else:
                self.omit(f"system[{j}] ({block.get('type')})", "essential")
        return parts

    def message(self, message: dict[str, Any], at: str) -> list[dict[str, Any]]:
        role = message.get("role")
        content = message.get("content")
        if role == "user":
            return self._user_messages(content, at)
        if role == "assistant":
            return [self._assistant_message(content, at)]
        if role == "system":  # real clients send them; chat completions has the role
            return [{"role": "system", "content": self.system_parts(content)}]
        raise UpstreamBadRequest(f"{at}: role {role!r} is not user or assistant", param="messages")

    def _user_messages(self, content: Any, at: str) -> list[dict[str, Any]]:
        """One Anthropic user turn: its tool results become `tool` messages (first, as
        OpenAI wants them right after the assistant's calls), the rest one user message."""
        if isinstance(content, str):
            return [{"role": "user", "content": content}]
        results: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        for j, block in enumerate(content or []):
            kind = block.get("type")
            where = f"{at}.content[{j}]"
            if kind == "tool_result":
                results.append(self._tool_message(block, where))
            elif kind == "text":
                parts.append(_text_part(block))
            elif kind == "image" and (image := _image_part(block.get("source") or {})):
                parts.append(image)
            else:
                self.omit(f"{where} ({kind})", block_kind(kind))
        return results + ([{"role": "user", "content": parts}] if parts else [])

    def _tool_message(self, block: dict[str, Any], at: str) -> dict[str, Any]:
        content = block.get("content")
        if isinstance(content, list):
            texts = []
            for k, part in enumerate(content):
                if part.get("type") == "text":
                    texts.append(part.get("text", ""))
                else:
                    where = f"{at}.content[{k}] ({part.get('type')} in a tool result)"
                    self.omit(where, "essential")
            content = "".join(texts)
        return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": content or ""}

    def _assistant_message(self, content: Any, at: str) -> dict[str, Any]:
        if isinstance(content, str):
            return {"role": "assistant", "content": content}
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for j, block in enumerate(content or []):
            kind = block.get("type")
            if kind == "text":
                texts.append(block.get("text", ""))
            elif kind == "tool_use":
                arguments = orjson.dumps(block.get("input") or {}).decode()
                calls.append(
                    {
                        "id": block.get("id"),
                        "type": "function",
                        "function": {"name": block.get("name"), "arguments": arguments},
                    }
                )
            else:  # thinking (its signature only Anthropic can check), server tool blocks
                self.omit(f"{at}.content[{j}] ({kind})", block_kind(kind))
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts else None,
        }
        if calls:
            message["tool_calls"] = calls
        return message

    def tool_kept(self, tool: dict[str, Any], i: int) -> bool:
        kind = tool.get("type")
        if kind in (None, "custom"):
            return True
        if isinstance(kind, str) and kind.startswith(HOSTED_TOOL_PREFIXES):
            self.omit(f"tools[{i}] ({kind}, run by Anthropic)", "hosted")
        else:  # bash, text_editor, computer, memory: the client runs them, but with no schema
            self.omit(f"tools[{i}] ({kind}, defined by Anthropic)", "essential")
        return False


def _text_part(block: dict[str, Any]) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": block.get("text", "")}
    if "cache_control" in block:  # kept: an OpenAI-wire target ignores it, a round trip needs it
        part["cache_control"] = block["cache_control"]
    return part


def _image_part(source: dict[str, Any]) -> dict[str, Any] | None:
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = str(source.get("url", ""))
    else:
        return None  # a Files API id: only Anthropic can resolve it
    return {"type": "image_url", "image_url": {"url": url}}


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {
        "name": tool.get("name"),
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: dict[str, Any]) -> dict[str, Any]:
    kind = choice.get("type")
    out: dict[str, Any]
    if kind == "auto":
        out = {"tool_choice": "auto"}
    elif kind == "any":
        out = {"tool_choice": "required"}
    elif kind == "none":
        out = {"tool_choice": "none"}
    elif kind == "tool":
        out = {"tool_choice": {"type": "function", "function": {"name": choice.get("name")}}}
    else:
        raise UpstreamBadRequest(f"tool_choice type {kind!r} is not valid", param="tool_choice")
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False
    return out


# --- response ------------------------------------------------------------------------


def anthropic_usage(usage: Usage) -> dict[str, Any]:
    """OpenAI's prompt_tokens include cached ones; Anthropic counts them apart."""
    return {
        "input_tokens": max(
            0, usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
        ),
        "output_tokens": usage.completion_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
        "cache_creation_input_tokens": usage.cache_write_tokens,
    }


def response_to_anthropic(completion: dict[str, Any], model: str, usage: Usage) -> dict[str, Any]:
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or _id("toolu_"),
                "name": function.get("name"),
                "input": _arguments(function.get("arguments")),
            }
        )
    return {
        "id": _id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")) or "end_turn",
        "stop_sequence": None,
        "usage": anthropic_usage(usage),
    }


def _arguments(arguments: Any) -> Any:
    if not isinstance(arguments, str):
        return arguments or {}
    try:
        return orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {"_raw": arguments}  # a model's broken JSON, kept rather than lost


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


# --- stream --------------------------------------------------------------------------


class AnthropicStreamWriter(ChatChunkWriter):
    """Feed OpenAI chunk objects (parsed `data:` payloads); get Anthropic (event, data) pairs
    in Anthropic's order: message_start, then per content block start / deltas / stop (a
    ping after the first start), then message_delta (stop reason, usage) and message_stop."""

    def __init__(self, model: str, prompt_tokens: int = 0) -> None:
        super().__init__()
        self.model = model
        self.usage = Usage(prompt_tokens=prompt_tokens)
        self._started = False
        self._block: int = -1
        self._open: str | None = None  # "text" or "tool:<openai index>"
        self.finished = False

    def close(self) -> Iterator[Event]:
        """The upstream stream ended normally: close the open block and the message."""
        yield from self._begin()
        yield from self._close_block()
        yield (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": stop_reason(self._finish) or "end_turn",
                    "stop_sequence": None,
                },
                # Cumulative, as Anthropic sends it: the SDKs take every count from here.
                "usage": anthropic_usage(self.usage),
            },
        )
        yield "message_stop", {"type": "message_stop"}
        self.finished = True

    def _begin(self) -> Iterator[Event]:
        if self._started:
            return
        self._started = True
        message: dict[str, Any] = {
            "id": _id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**anthropic_usage(self.usage), "output_tokens": 1},
        }
        yield "message_start", {"type": "message_start", "message": message}

    def _text(self, text: str) -> Iterator[Event]:
        if self._open != "text":
            yield from self._close_block()
            yield from self._open_block("text", {"type": "text", "text": ""})
        delta = {"type": "text_delta", "text": text}
        yield (
            "content_block_delta",
            {"type": "content_block_delta", "index": self._block, "delta": delta},
        )

    def _tool_call(self, call: dict[str, Any]) -> Iterator[Event]:
        key = f"tool:{call.get('index', 0)}"
        function = call.get("function") or {}
        if self._open != key:
            yield from self._close_block()
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or _id("toolu_"),
                "name": function.get("name") or "",
                "input": {},
            }
            yield from self._open_block(key, block)
        if function.get("arguments"):
            delta = {"type": "input_json_delta", "partial_json": function["arguments"]}
            yield (
                "content_block_delta",
                {"type": "content_block_delta", "index": self._block, "delta": delta},
            )

    def _open_block(self, key: str, block: dict[str, Any]) -> Iterator[Event]:
        self._block += 1
        self._open = key
        yield (
            "content_block_start",
            {"type": "content_block_start", "index": self._block, "content_block": block},
        )
        if self._block == 0:
            yield "ping", {"type": "ping"}  # where Anthropic sends its first one

    def _close_block(self) -> Iterator[Event]:
        if self._open is not None:
            yield "content_block_stop", {"type": "content_block_stop", "index": self._block}
            self._open = None
