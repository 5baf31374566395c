"""What the mock answers: deterministic text, tool calls, embeddings and token counts, in
each wire format's own shapes."""

from __future__ import annotations

import base64
import hashlib
import struct
import time
import uuid
from typing import Any

import orjson

from gateway.mock.tools import responses_tools, text_of, wants_tool


def estimate_tokens(value: Any) -> int:
    """About four characters a token, as OpenAI's rule of thumb says; at least one."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return max(1, len(text) // 4)


def words(count: int, start: int = 0) -> list[str]:
    """The mock's answer, word by word; `start` continues an answer already begun."""
    return [f"tok{i} " if i else "Hello " for i in range(start, start + count)]


def continued_from(body: dict[str, Any], messages: list[dict[str, Any]]) -> int:
    """How many words of its answer a continuation request already holds: an assistant turn
    last (Anthropic prefill, or OpenAI-wire with `continue_final_message`)."""
    if not messages or messages[-1].get("role") != "assistant":
        return 0
    if "continue_final_message" in body and not body["continue_final_message"]:
        return 0
    content = messages[-1].get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return len(str(content or "").split())


def embedding(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % 32] - 128) / 128, 6) for i in range(dims)]


def embeddings_response(body: dict[str, Any], dims: int) -> dict[str, Any]:
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    use_base64 = body.get("encoding_format") == "base64"
    data = []
    for i, item in enumerate(inputs):
        vector = embedding(str(item), int(body.get("dimensions") or dims))
        value: Any = (
            base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            if use_base64
            else vector
        )
        data.append({"object": "embedding", "index": i, "embedding": value})
    tokens = sum(estimate_tokens(str(x)) for x in inputs)
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def openai_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def openai_chat(body: dict[str, Any], n_tokens: int) -> dict[str, Any]:
    messages = body["messages"]
    prompt = estimate_tokens(messages)
    tool = wants_tool(body, messages)
    message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
    if tool:
        message["tool_calls"] = [
            {
                "id": openai_id("call"),
                "type": "function",
                "function": {
                    "name": tool["name"],
                    "arguments": orjson.dumps(tool["arguments"]).decode(),
                },
            }
        ]
        completion, finish = estimate_tokens(tool["arguments"]) + 5, "tool_calls"
    else:
        message["content"] = "".join(words(n_tokens, continued_from(body, messages))).strip()
        completion, finish = n_tokens, "length" if _capped(body, n_tokens) else "stop"
    return {
        "id": openai_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": _openai_usage(prompt, completion),
    }


def _capped(body: dict[str, Any], n_tokens: int) -> bool:
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return limit is not None and n_tokens >= int(limit)


def _openai_usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


def openai_chat_chunks(body: dict[str, Any], n_tokens: int) -> list[dict[str, Any]]:
    """Every chunk of a chat stream, the usage chunk last when include_usage is set."""
    base = {
        "id": openai_id("chatcmpl"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": body["model"],
    }
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        out = {
            **base,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            out["usage"] = None
        return out

    messages = body["messages"]
    tool = wants_tool(body, messages)
    chunks = [chunk({"role": "assistant", "content": ""})]
    if tool:
        arguments = orjson.dumps(tool["arguments"]).decode()
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": openai_id("call"),
                            "type": "function",
                            "function": {"name": tool["name"], "arguments": ""},
                        }
                    ]
                }
            )
        )
        for i in range(0, len(arguments), 8):
            chunks.append(
                chunk(
                    {"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 8]}}]}
                )
            )
        completion, finish = estimate_tokens(tool["arguments"]) + 5, "tool_calls"
    else:
        start = continued_from(body, messages)
        chunks.extend(chunk({"content": word}) for word in words(n_tokens, start))
        completion, finish = n_tokens, "length" if _capped(body, n_tokens) else "stop"
    chunks.append(chunk({}, finish))
    if include_usage:
        chunks.append(
            {**base, "choices": [], "usage": _openai_usage(estimate_tokens(messages), completion)}
        )
    return chunks


def openai_completion(body: dict[str, Any], n_tokens: int) -> dict[str, Any]:
    return {
        "id": openai_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "text": "".join(words(n_tokens)),
                "logprobs": None,
                "finish_reason": "length" if _capped(body, n_tokens) else "stop",
            }
        ],
        "usage": _openai_usage(estimate_tokens(body["prompt"]), n_tokens),
    }


def openai_completion_chunks(body: dict[str, Any], n_tokens: int) -> list[dict[str, Any]]:
    base = {
        "id": openai_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": body["model"],
    }
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    chunks = [
        {**base, "choices": [{"index": 0, "text": w, "logprobs": None, "finish_reason": None}]}
        for w in words(n_tokens)
    ]
    chunks.append(
        {**base, "choices": [{"index": 0, "text": "", "logprobs": None, "finish_reason": "stop"}]}
    )
    if include_usage:
        chunks.append(
            {
                **base,
                "choices": [],
                "usage": _openai_usage(estimate_tokens(body["prompt"]), n_tokens),
            }
        )
    return chunks


# --- Anthropic -----------------------------------------------------------------------


def anthropic_message(body: dict[str, Any], n_tokens: int) -> dict[str, Any]:
    prompt = estimate_tokens([body.get("system"), body["messages"]])
    tool = wants_tool(body, body["messages"])
    n_tokens = min(n_tokens, int(body["max_tokens"]))
    if tool:
        content = [
            {
                "type": "tool_use",
                "id": f"toolu_{uuid.uuid4().hex[:20]}",
                "name": tool["name"],
                "input": tool["arguments"],
            }
        ]
        output, stop = estimate_tokens(tool["arguments"]) + 5, "tool_use"
    else:
        start = continued_from(body, body["messages"])
        content = [{"type": "text", "text": "".join(words(n_tokens, start)).strip()}]
        output = n_tokens
        stop = "max_tokens" if n_tokens >= int(body["max_tokens"]) else "end_turn"
    if _thinks(body):
        content = [THINKING, *content]
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": prompt,
            "output_tokens": output,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


# Extended thinking, as Anthropic streams it: the thought, then its signature.
THINKING = {"type": "thinking", "thinking": "Let me think.", "signature": "EqMBCkgIARABGAIiQmock"}


def _thinks(body: dict[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, dict) and thinking.get("type") == "enabled"


def _thinking_events() -> list[tuple[str, dict[str, Any]]]:
    def delta(kind: str, **value: str) -> tuple[str, dict[str, Any]]:
        event = {"type": "content_block_delta", "index": 0, "delta": {"type": kind, **value}}
        return "content_block_delta", event

    start = {"type": "content_block_start", "index": 0,
             "content_block": {"type": "thinking", "thinking": "", "signature": ""}}  # fmt: skip
    return [
        ("content_block_start", start),
        delta("thinking_delta", thinking=THINKING["thinking"]),
        delta("signature_delta", signature=THINKING["signature"]),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ]


def anthropic_events(body: dict[str, Any], n_tokens: int) -> list[tuple[str, dict[str, Any]]]:
    message = anthropic_message(body, n_tokens)
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    thinks = _thinks(body)
    if thinks:
        events.extend(_thinking_events())
    first = len(events)
    block = message["content"][-1]
    if block["type"] == "tool_use":
        events.append(
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {**block, "input": {}},
                },
            )
        )
        arguments = orjson.dumps(block["input"]).decode()
        for i in range(0, len(arguments), 8):
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "input_json_delta", "partial_json": arguments[i : i + 8]},
                    },
                )
            )
    else:
        events.append(
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        )
        events.append(("ping", {"type": "ping"}))
        offset = continued_from(body, body["messages"])
        for word in words(min(n_tokens, int(body["max_tokens"])), offset):
            events.append(
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": word},
                    },
                )
            )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    if thinks:  # the answer's block comes after the thought's
        for _, data in events[first:]:
            if "index" in data:
                data["index"] = 1
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


# --- OpenAI Responses (for native pass-through) -----------------------------------------


def _responses_turn(body: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """The input as the chat-like turns `wants_tool` reads, and the prompt's size."""
    given = body.get("input")
    items = [{"role": "user", "content": given}] if isinstance(given, str) else list(given or [])
    outputs = ("function_call_output", "custom_tool_call_output")
    turns = [
        {
            "role": "tool" if item.get("type") in outputs else item.get("role", ""),
            "content": text_of(item.get("content")),
        }
        for item in items
        if item.get("type") != "additional_tools"
    ]
    return turns, estimate_tokens(items)


def responses_output(body: dict[str, Any], n_tokens: int) -> tuple[list[dict[str, Any]], int]:
    turns, _ = _responses_turn(body)
    tools = responses_tools(body)
    tool = wants_tool({**body, "tools": tools}, turns)
    if tool:
        spec = next(t for t in tools if t.get("name") == tool["name"])
        call: dict[str, Any] = {"id": openai_id("fc"), "status": "completed",
                                "call_id": openai_id("call"), "name": tool["name"]}  # fmt: skip
        if spec.get("type") == "custom":  # free-form input, not JSON arguments
            call.update(type="custom_tool_call", input="sample")
        else:
            call.update(type="function_call", arguments=orjson.dumps(tool["arguments"]).decode())
        if spec.get("_namespace"):
            call["namespace"] = spec["_namespace"]
        return [call], estimate_tokens(tool["arguments"]) + 5
    text = "".join(words(n_tokens))  # the deltas, joined: a stream says the same
    message = {
        "id": openai_id("msg"),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }
    return [message], n_tokens


def responses_answer(body: dict[str, Any], n_tokens: int) -> dict[str, Any]:
    output, completion = responses_output(body, n_tokens)
    _, prompt = _responses_turn(body)
    return _response(body, openai_id("resp"), output, "completed", prompt, completion)


def _response(
    body: dict[str, Any], rid: str, output: list[dict[str, Any]], status: str, prompt: int,
    completion: int,
) -> dict[str, Any]:  # fmt: skip
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }
    return {
        "id": rid, "object": "response", "created_at": int(time.time()), "status": status,
        "model": body.get("model"), "output": output, "error": None, "incomplete_details": None,
        "instructions": body.get("instructions"), "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
        "store": body.get("store", True), "usage": usage if status != "in_progress" else None,
        "metadata": body.get("metadata") or {},
    }  # fmt: skip


def responses_events(body: dict[str, Any], n_tokens: int) -> list[tuple[str, dict[str, Any]]]:
    output, completion = responses_output(body, n_tokens)
    _, prompt = _responses_turn(body)
    rid = openai_id("resp")
    events: list[tuple[str, dict[str, Any]]] = []

    def add(name: str, **data: Any) -> None:
        events.append((name, {"type": name, "sequence_number": len(events), **data}))

    opening = _response(body, rid, [], "in_progress", prompt, 0)
    add("response.created", response=opening)
    add("response.in_progress", response=opening)
    item = output[0]
    if item["type"] == "function_call":
        add("response.output_item.added", output_index=0, item={**item, "arguments": ""})
        args = item["arguments"]
        for i in range(0, len(args), 8):
            add("response.function_call_arguments.delta", item_id=item["id"], output_index=0,
                delta=args[i : i + 8])  # fmt: skip
        add("response.function_call_arguments.done", item_id=item["id"], output_index=0,
            arguments=args)  # fmt: skip
    elif item["type"] == "custom_tool_call":
        add("response.output_item.added", output_index=0, item={**item, "input": ""})
        add("response.custom_tool_call_input.delta", item_id=item["id"], output_index=0,
            delta=item["input"])  # fmt: skip
        add("response.custom_tool_call_input.done", item_id=item["id"], output_index=0,
            input=item["input"])  # fmt: skip
    else:
        where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        add("response.output_item.added", output_index=0, item={**item, "content": []})
        add("response.content_part.added", **where, part=part)
        for word in words(n_tokens):
            add("response.output_text.delta", **where, delta=word, logprobs=[])
        text = item["content"][0]["text"]
        add("response.output_text.done", **where, text=text, logprobs=[])
        add("response.content_part.done", **where, part={**part, "text": text})
    add("response.output_item.done", output_index=0, item=item)
    add(
        "response.completed", response=_response(body, rid, output, "completed", prompt, completion)
    )
    return events
