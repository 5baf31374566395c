"""OpenAI chat completions ⇄ Anthropic Messages. Pure functions and one small state
machine for streams; no I/O. litellm's translation is the oracle in the differential tests.

What does not map raises `Unsupported`, so another target can serve the request: `n > 1`,
the `function` role, content parts other than text and images, tools and tool choices other
than functions. `logprobs`, `presence_penalty`, `frequency_penalty`, `seed`,
`response_format` and `logit_bias` have no Anthropic counterpart and are dropped. Expects a
body that `gateway.pipeline.ingress.openai_validate` passed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson

from gateway.errors import Unsupported, UpstreamBadRequest
from gateway.providers.base import Usage

_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None) -> str | None:
    return _FINISH.get(stop_reason, "stop") if stop_reason else None


# --- request -------------------------------------------------------------------------


def request_to_anthropic(
    body: dict[str, Any], model: str, default_max_tokens: int
) -> dict[str, Any]:
    if int(body.get("n") or 1) > 1:
        raise Unsupported("n > 1 is not supported by Anthropic")
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in body["messages"]:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_text_blocks(message.get("content")))
        elif role == "user":
            _append(messages, "user", _user_blocks(message.get("content")))
        elif role == "assistant":
            _append(messages, "assistant", _assistant_blocks(message))
        elif role == "tool":
            _append(messages, "user", [_tool_result(message)])
        else:
            raise Unsupported(f"role {role!r} cannot be sent to Anthropic")

    _trim_prefill(messages)
    out: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": body.get("max_completion_tokens")
        or body.get("max_tokens")
        or default_max_tokens,
    }
    if system:
        out["system"] = system
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("stream"):
        out["stream"] = True
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(t) for t in tools]
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and tools:
        out["tool_choice"] = choice
    budget = _thinking_budget(body, out)
    if budget is not None:
        out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return out


# A reasoning effort as an extended-thinking budget; Anthropic's smallest is 1,024 tokens.
_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}


def _thinking_budget(body: dict[str, Any], out: dict[str, Any]) -> int | None:
    """The thinking budget for the request's `reasoning_effort`, or None where Anthropic
    would refuse thinking: a budget must stay under `max_tokens`; thinking takes no
    temperature but 1, no top_k, top_p only from 0.95, no forced tool; and mid tool loop
    the last assistant turn would need the thinking block a chat history never kept."""
    wanted = _BUDGETS.get(str(body.get("reasoning_effort")))
    max_tokens = int(out["max_tokens"])
    messages = body["messages"]
    refused = (
        out.get("temperature") not in (None, 1)
        or "top_k" in out
        or float(out.get("top_p", 1)) < 0.95
        or out.get("tool_choice", {}).get("type") in ("any", "tool")
        or bool(messages and messages[-1].get("role") == "tool")
    )
    if wanted is None or max_tokens <= _BUDGETS["low"] or refused:
        return None
    return min(wanted, max_tokens - 1)


def _trim_prefill(messages: list[dict[str, Any]]) -> None:
    """A conversation that ends with the assistant is a prefill to continue; Anthropic
    rejects one that ends in white space, which carries no meaning there."""
    if messages and messages[-1]["role"] == "assistant":
        blocks = messages[-1]["content"]
        if blocks and blocks[-1].get("type") == "text":
            blocks[-1]["text"] = blocks[-1]["text"].rstrip()


def _append(messages: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    """Anthropic wants strictly alternating roles: merge consecutive same-role turns."""
    if messages and messages[-1]["role"] == role:
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": role, "content": blocks})


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        if part.get("type") == "text":
            block: dict[str, Any] = {"type": "text", "text": part.get("text", "")}
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
    return blocks


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str) or content is None:
        return _text_blocks(content)
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.extend(_text_blocks([part]))
        elif kind == "image_url":
            blocks.append(_image(part.get("image_url") or {}))
        else:
            raise Unsupported(f"content part {kind!r} cannot be sent to Anthropic")
    return blocks


def _image(image_url: dict[str, Any] | str) -> dict[str, Any]:
    url = image_url if isinstance(image_url, str) else str(image_url.get("url", ""))
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0] or "image/png"
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = _text_blocks(message.get("content"))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            parsed = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError:
            raise UpstreamBadRequest(
                "tool call arguments are not valid JSON", param="messages"
            ) from None
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": parsed,
            }
        )
    return blocks


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    block["content"] = content if isinstance(content, str) else _text_blocks(content)
    return block


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type", "function") != "function":
        raise Unsupported(f"tools of type {tool.get('type')!r} cannot be sent to Anthropic")
    function = tool.get("function") or {}
    out: dict[str, Any] = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    if "cache_control" in tool:
        out["cache_control"] = tool["cache_control"]
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        out = {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    elif isinstance(choice, dict):
        raise Unsupported(f"tool_choice of type {choice.get('type')!r} cannot be sent to Anthropic")
    else:
        raise UpstreamBadRequest(f"tool_choice {choice!r} is not valid", param="tool_choice")
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


# --- response ------------------------------------------------------------------------


def usage_from_anthropic(usage: dict[str, Any]) -> Usage:
    """Anthropic's input_tokens exclude cache reads and writes; OpenAI's prompt_tokens
    include every prompt token, so the three are added."""
    read = int(usage.get("cache_read_input_tokens") or 0)
    write = int(usage.get("cache_creation_input_tokens") or 0)
    return Usage(
        prompt_tokens=int(usage.get("input_tokens") or 0) + read + write,
        completion_tokens=int(usage.get("output_tokens") or 0),
        cached_tokens=read,
        cache_write_tokens=write,
    )


def openai_usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
        "cache_creation_input_tokens": usage.cache_write_tokens,
        "cache_read_input_tokens": usage.cached_tokens,
    }


def response_from_anthropic(message: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
    text: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text", ""))
        elif kind == "thinking":
            reasoning.append(block.get("thinking", ""))
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    if tool_calls:
        reply["tool_calls"] = tool_calls
    if reasoning:
        reply["reasoning_content"] = "".join(reasoning)
    usage = usage_from_anthropic(message.get("usage") or {})
    completion = {
        "id": message.get("id"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")),
            }
        ],
        "usage": openai_usage(usage),
    }
    return completion, usage


# --- stream --------------------------------------------------------------------------


class StreamTranslator:
    """Feed Anthropic stream events (parsed `data:` objects); get OpenAI chunk objects."""

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.usage = Usage()
        self.finished = False
        self._id = ""
        self._model = ""
        self._created = int(time.time())
        self._tool_index_of_block: dict[int, int] = {}
        self._input: dict[str, Any] = {}

    def feed(self, event: dict[str, Any]) -> Iterator[dict[str, Any]]:
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._id = str(message.get("id") or "")
            self._model = str(message.get("model") or "")
            self._input = dict(message.get("usage") or {})
            self.usage = usage_from_anthropic(self._input)
            yield self._chunk({"role": "assistant", "content": ""})
        elif kind == "content_block_start":
            block = event.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = len(self._tool_index_of_block)
                self._tool_index_of_block[int(event.get("index", 0))] = index
                yield self._chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": block.get("id"),
                                "type": "function",
                                "function": {"name": block.get("name"), "arguments": ""},
                            }
                        ]
                    }
                )
            elif block.get("type") == "text" and block.get("text"):
                yield self._chunk({"content": block["text"]})
        elif kind == "content_block_delta":
            delta = event.get("delta") or {}
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                yield self._chunk({"content": delta.get("text", "")})
            elif delta_type == "thinking_delta":
                yield self._chunk({"reasoning_content": delta.get("thinking", "")})
            elif delta_type == "input_json_delta":
                index = self._tool_index_of_block.get(int(event.get("index", 0)), 0)
                yield self._chunk(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "function": {"arguments": delta.get("partial_json", "")},
                            }
                        ]
                    }
                )
        elif kind == "message_delta":
            usage = {**self._input, **(event.get("usage") or {})}
            self.usage = usage_from_anthropic(usage)
            reason = finish_reason((event.get("delta") or {}).get("stop_reason"))
            if reason:
                yield self._chunk({}, finish=reason)
        elif kind == "message_stop":
            self.finished = True
            if self.include_usage:
                chunk = self._chunk({})
                chunk["choices"] = []
                chunk["usage"] = openai_usage(self.usage)
                yield chunk

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
