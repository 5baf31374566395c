"""OpenAI chat completions ⇄ OpenAI Responses, the answer's direction: a chat completion
into a Response object, a chat stream into the Responses event sequence, and a native
Responses usage into ours. The request's direction is `responses_openai`. Pure; no I/O.

A flattened namespaced or custom tool's call is told back under the namespace and name
the client gave (`Translated.tool_names`, passed here as `ToolNames`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson

from gateway.providers.base import Usage
from gateway.providers.translate.chat_form import ChatChunkWriter, ClientTool, Event, random_id


def usage_from_responses(usage: dict[str, Any]) -> Usage:
    input_details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    return Usage(
        prompt_tokens=int(usage.get("input_tokens") or 0),
        completion_tokens=int(usage.get("output_tokens") or 0),
        cached_tokens=int(input_details.get("cached_tokens") or 0),
        reasoning_tokens=int(output_details.get("reasoning_tokens") or 0),
    )


def responses_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def response_object(
    body: dict[str, Any],
    response_id: str,
    model: str,
    output: list[dict[str, Any]],
    status: str,
    usage: Usage | None,
    created_at: int,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Response as the API returns it, echoing the request's settings."""
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": False,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": responses_usage(usage) if usage is not None else None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


ToolNames = dict[str, ClientTool]  # chat name → the client's tool: Translated.tool_names


def call_item(
    item_id: str,
    call_id: str,
    name: str,
    arguments: str,
    status: str,
    names: ToolNames | None = None,
) -> dict[str, Any]:
    """A function_call item; a flattened namespaced tool's call under the client's own
    namespace and name, a custom tool's as a custom_tool_call with its free-form input."""
    tool = names.get(name) if names else None
    item: dict[str, Any] = {"id": item_id, "type": "function_call", "status": status,
                            "call_id": call_id, "name": name, "arguments": arguments}  # fmt: skip
    if tool is None:
        return item
    item["name"] = tool.name
    if tool.namespace is not None:
        item["namespace"] = tool.namespace
    if tool.custom:
        del item["arguments"]
        item.update(type="custom_tool_call", input=free_form_input(arguments))
    return item


def free_form_input(arguments: str) -> str:
    """A custom tool's input from the chat function arguments that carried it."""
    try:
        parsed = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return arguments  # a model that answered the input bare
    value = parsed.get("input") if isinstance(parsed, dict) else None
    return value if isinstance(value, str) else arguments


def output_from_chat(
    completion: dict[str, Any], names: ToolNames | None = None
) -> tuple[list[dict[str, Any]], str]:
    """A chat completion's output items and the response status it ends in."""
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    output: list[dict[str, Any]] = []
    if message.get("content"):
        output.append(message_item(random_id("msg_"), message["content"]))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        output.append(
            call_item(
                random_id("fc_"),
                call.get("id") or random_id("call_"),
                function.get("name") or "",
                function.get("arguments") or "",
                "completed",
                names,
            )
        )
    status = "incomplete" if choice.get("finish_reason") == "length" else "completed"
    return output, status


# --- stream --------------------------------------------------------------------------


class ResponsesStreamWriter(ChatChunkWriter):
    """Feed chat chunk objects; get the Responses events, each with its `sequence_number`:
    response.created and .in_progress, then per output item added → deltas → done, and
    response.completed (or .incomplete) carrying the whole response; `fail` ends it with
    response.failed."""

    def __init__(
        self, body: dict[str, Any], response_id: str, model: str, names: ToolNames | None = None
    ) -> None:
        super().__init__()
        self._names = names
        self._body = body
        self.response_id = response_id
        self._model = model
        self._created = int(time.time())
        self._seq = 0
        self._started = False
        self._output: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._calls: dict[int, dict[str, Any]] = {}  # chat tool index → its item
        self.final: dict[str, Any] | None = None

    def close(self) -> Iterator[Event]:
        yield from self._begin()
        yield from self._close_item()
        status = "incomplete" if self._finish == "length" else "completed"
        self.final = self._response(status, self.usage)
        yield self._event(f"response.{status}", {"response": self.final})

    def fail(self, code: str, message: str) -> Iterator[Event]:
        yield from self._begin()
        error = {"code": code, "message": message}
        failed = self._response("failed", self.usage, error)
        yield self._event("response.failed", {"response": failed})

    def _response(
        self, status: str, usage: Usage | None, error: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        output = [_public(item) for item in self._output]
        return response_object(
            self._body, self.response_id, self._model, output, status, usage, self._created, error
        )

    def _begin(self) -> Iterator[Event]:
        if self._started:
            return
        self._started = True
        opening = self._response("in_progress", None)
        yield self._event("response.created", {"response": opening})
        yield self._event("response.in_progress", {"response": opening})

    def _text(self, text: str) -> Iterator[Event]:
        item = self._open
        if item is None or item["type"] != "message":
            yield from self._close_item()
            item = message_item(random_id("msg_"), "", "in_progress")
            item["content"] = []
            yield from self._add(item)
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            item["content"].append(part)
            yield self._event("response.content_part.added", {**self._where(item), "part": part})
        item["content"][0]["text"] += text
        yield self._event(
            "response.output_text.delta", {**self._where(item), "delta": text, "logprobs": []}
        )

    def _tool_call(self, call: dict[str, Any]) -> Iterator[Event]:
        index = int(call.get("index", 0))
        function = call.get("function") or {}
        item = self._calls.get(index)
        if item is None:
            yield from self._close_item()
            call_id = call.get("id") or random_id("call_")
            name = function.get("name") or ""
            item = call_item(random_id("fc_"), call_id, name, "", "in_progress", self._names)
            self._calls[index] = item
            yield from self._add(item)
        if function.get("arguments") and item["type"] == "custom_tool_call":
            item["_arguments"] = item.get("_arguments", "") + function["arguments"]
        elif function.get("arguments"):
            item["arguments"] += function["arguments"]
            yield self._event(
                "response.function_call_arguments.delta",
                {
                    "item_id": item["id"],
                    "output_index": item["_index"],
                    "delta": function["arguments"],
                },
            )

    def _add(self, item: dict[str, Any]) -> Iterator[Event]:
        item["_index"] = len(self._output)
        self._open = item
        self._output.append(item)
        yield self._event(
            "response.output_item.added", {"output_index": item["_index"], "item": _public(item)}
        )

    def _close_item(self) -> Iterator[Event]:
        item = self._open
        if item is None:
            return
        self._open = None
        item["status"] = "completed"
        if item["type"] == "message":
            part = item["content"][0]
            where = self._where(item)
            yield self._event(
                "response.output_text.done", {**where, "text": part["text"], "logprobs": []}
            )
            yield self._event("response.content_part.done", {**where, "part": part})
        elif item["type"] == "custom_tool_call":
            # Its input is known once the chat arguments that carry it are whole.
            item["input"] = free_form_input(item.pop("_arguments", ""))
            where = {"item_id": item["id"], "output_index": item["_index"]}
            yield self._event(
                "response.custom_tool_call_input.delta", {**where, "delta": item["input"]}
            )
            yield self._event(
                "response.custom_tool_call_input.done", {**where, "input": item["input"]}
            )
        else:
            yield self._event(
                "response.function_call_arguments.done",
                {
                    "item_id": item["id"],
                    "output_index": item["_index"],
                    "arguments": item["arguments"],
                },
            )
        done = {"output_index": item["_index"], "item": _public(item)}
        yield self._event("response.output_item.done", done)

    def _where(self, item: dict[str, Any]) -> dict[str, Any]:
        return {"item_id": item["id"], "output_index": item["_index"], "content_index": 0}

    def _event(self, name: str, data: dict[str, Any]) -> Event:
        event = (name, {"type": name, "sequence_number": self._seq, **data})
        self._seq += 1
        return event


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if not k.startswith("_")}
