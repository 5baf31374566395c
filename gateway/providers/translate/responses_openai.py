"""OpenAI Responses → OpenAI chat completions, for Responses clients served by chat targets:
the request, its stored history first, into chat messages. The answer's direction (a
Response object and its event stream from chat) is `openai_responses`. Pure; no I/O.

Like the Anthropic pair, what chat completions cannot say is named in `Translated.left_out`,
classed: advisory (reasoning items, encrypted for their own model; `client_metadata`),
hosted (tools OpenAI runs — web search, file search, code interpreter — and their calls in
the history), essential (files, custom and shell tools, items without the `call_id` a chat
tool message needs, fields it does not know). Namespaced tools (Codex's `namespace`: a
group of client-run function tools) become plain function tools, remembered in
`Translated.tool_names` so the answer can name them as the client did."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import UpstreamBadRequest
from gateway.providers.translate.chat_form import (
    ClientTool,
    Omission,
    OmissionKind,
    Translated,
)

# Fields the gateway handles itself or that chat completions can say; others are left out.
HANDLED_FIELDS = frozenset(
    {"model", "input", "instructions", "tools", "tool_choice", "max_output_tokens",
     "temperature", "top_p", "text", "reasoning", "parallel_tool_calls", "metadata", "user",
     "stream", "store", "previous_response_id", "prompt_cache_key", "safety_identifier",
     "stream_options", "include", "truncation", "service_tier", "top_logprobs"}
)  # fmt: skip
_ROLES = frozenset({"user", "assistant", "system", "developer"})
ADVISORY_FIELDS = frozenset(
    {"client_metadata", "max_tool_calls", "prompt_cache_retention", "context_management"}
)
ADVISORY_ITEMS = frozenset({"reasoning"})
HOSTED_ITEMS = frozenset(
    {"web_search_call", "file_search_call", "code_interpreter_call", "image_generation_call",
     "mcp_call", "mcp_list_tools", "mcp_approval_request", "mcp_approval_response"}
)  # fmt: skip
HOSTED_TOOLS = ("web_search", "file_search", "code_interpreter", "image_generation", "mcp")
MAX_FUNCTION_NAME = 64  # OpenAI's limit on a function tool's name


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's `input` as items (a string is one user message)."""
    given = body.get("input")
    if isinstance(given, str):
        return [{"type": "message", "role": "user", "content": given}]
    return [item if "type" in item else {"type": "message", **item} for item in given or []]


# --- request -------------------------------------------------------------------------


def offered_tools(tools: Any, items: Any) -> list[dict[str, Any]]:
    """The tools a request offers: in `tools`, and in `additional_tools` input items (where
    Codex sends them for its newest models). Reads unvalidated input too."""
    offered = [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []
    for item in items if isinstance(items, list) else []:
        given = item.get("tools") if isinstance(item, dict) else None
        if isinstance(given, list) and item.get("type") == "additional_tools":
            offered.extend(t for t in given if isinstance(t, dict))
    return offered


def request_to_chat(body: dict[str, Any], history: list[dict[str, Any]], model: str) -> Translated:
    """`history`: the stored items of the `previous_response_id` chain, oldest first."""
    out: dict[str, Any] = {"model": model}
    translated = Translated(out)
    items = [*history, *input_items(body)]
    tools, names = _chat_tools(offered_tools(body.get("tools"), items), translated)
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    for i, item in enumerate(items):
        at = f"input[{i - len(history)}]" if i >= len(history) else ""
        _item(item, messages, translated, names, at)
    out["messages"] = messages
    if body.get("max_output_tokens") is not None:
        out["max_completion_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "parallel_tool_calls", "user", "prompt_cache_key",
                 "safety_identifier", "top_logprobs", "service_tier"):  # fmt: skip
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("top_logprobs") is not None:
        out["logprobs"] = True
    effort = (body.get("reasoning") or {}).get("effort")
    if isinstance(effort, str) and effort:  # the target's, where it reasons (attempt stage)
        translated.reasoning_effort = effort
        translated.left_out.append(Omission("reasoning.effort", "advisory"))
    if (body.get("text") or {}).get("verbosity") is not None:  # chat completions has no such
        translated.left_out.append(Omission("text.verbosity", "advisory"))
    fmt = (body.get("text") or {}).get("format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
        out["response_format"] = _response_format(fmt)
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        tools = _allowed(tools, choice, names)  # chat has no such choice: offer only those
        choice = choice.get("mode")
    if tools:
        out["tools"] = tools
        if choice is not None:
            out["tool_choice"] = _tool_choice(choice, names)
    for name in body:
        if name not in HANDLED_FIELDS:
            kind: OmissionKind = "advisory" if name in ADVISORY_FIELDS else "essential"
            translated.left_out.append(Omission(name, kind))
    return translated


Names = dict[tuple[str | None, str], str]  # (namespace, name) → the chat function's name


def _chat_tools(
    given: list[dict[str, Any]], translated: Translated
) -> tuple[list[dict[str, Any]], Names]:
    """The chat function tools: namespaces opened, custom (free-form) tools as functions of
    one string `input`; and the chat name each of those got (its own, unless that is taken:
    `namespace__name`)."""
    tools: list[dict[str, Any]] = []
    taken = {t.get("name") for t in given if t.get("type") == "function"}
    names: Names = {}

    def add(tool: dict[str, Any], space: str | None, where: str) -> None:
        kind, name = tool.get("type", "function"), str(tool.get("name") or "")
        if kind not in ("function", "custom"):
            translated.left_out.append(Omission(f"{where} ({kind})", "essential"))
            return
        if space is None and kind == "function":
            tools.append(_tool(tool))
            return
        chat_name = name if name not in taken else f"{space}__{name}"[:MAX_FUNCTION_NAME]
        taken.add(chat_name)
        names[(space, name)] = chat_name
        translated.tool_names[chat_name] = ClientTool(name, space, kind == "custom")
        shape = _tool({**tool, "name": chat_name, "parameters": _FREE_FORM})
        tools.append(shape if kind == "custom" else _tool({**tool, "name": chat_name}))

    for i, tool in enumerate(given):
        kind = tool.get("type")
        if kind == "namespace" and isinstance(tool.get("tools"), list):
            space = str(tool.get("name") or "")
            for inner in tool["tools"]:
                if isinstance(inner, dict):
                    add(inner, space, f"tools[{i}] (in namespace {space})")
        elif isinstance(kind, str) and kind.startswith(HOSTED_TOOLS):
            translated.left_out.append(Omission(f"tools[{i}] ({kind}, run by OpenAI)", "hosted"))
        else:
            add(tool, None, f"tools[{i}]")
    return tools, names


# A custom tool's free-form input, as a chat function's one argument.
_FREE_FORM = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's free-form input."}},
    "required": ["input"],
}


def _item(
    item: dict[str, Any],
    messages: list[dict[str, Any]],
    translated: Translated,
    names: Names,
    at: str,
) -> None:
    kind = item.get("type")
    if kind == "message":
        role = item.get("role")
        if role not in _ROLES:
            raise UpstreamBadRequest(
                f"{at or 'history'}: role {role!r} is not a message role", param="input"
            )
        content = _content(item.get("content"), role, translated, at)
        messages.append({"role": role, "content": content})
    elif kind == "additional_tools":
        return  # its tools are among the request's tools
    elif kind in _CALLS and not isinstance(item.get("call_id"), str):
        # a chat tool message must name its call
        where = f"{at or 'history'} ({kind} without call_id)"
        translated.left_out.append(Omission(where, "essential"))
    elif kind in ("function_call", "custom_tool_call"):
        name = str(item.get("name"))
        name = names.get((item.get("namespace") or None, name), name)
        arguments = item.get("arguments") or ""
        if kind == "custom_tool_call":
            arguments = orjson.dumps({"input": str(item.get("input") or "")}).decode()
        call = {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and "tool_calls" in last:
            last["tool_calls"].append(call)  # parallel calls: one assistant turn
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        text = output if isinstance(output, str) else _joined_text(output)
        messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
    elif at:  # reasoning (encrypted for its own model), built-in tool calls, references
        translated.left_out.append(Omission(f"{at} ({kind})", _item_kind(kind)))


_CALLS = frozenset(
    {"function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output"}
)


def _item_kind(kind: Any) -> OmissionKind:
    if kind in ADVISORY_ITEMS:
        return "advisory"
    return "hosted" if kind in HOSTED_ITEMS else "essential"


def _content(content: Any, role: str, translated: Translated, at: str) -> Any:
    if isinstance(content, str):
        return content
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content or []):
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif at:
            translated.left_out.append(Omission(f"{at}.content[{j}] ({kind})", "essential"))
    if role != "user":  # only user turns take images: the rest is text
        return "".join(p.get("text", "") for p in parts)
    return parts


def _joined_text(output: Any) -> str:
    if not isinstance(output, list):
        return "" if output is None else str(output)
    return "".join(p.get("text", "") for p in output if isinstance(p, dict))


def _response_format(fmt: dict[str, Any]) -> dict[str, Any]:
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
    return {"type": "json_schema", "json_schema": schema}


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {
        "name": tool.get("name"),
        "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
    }
    for name in ("description", "strict"):
        if tool.get(name) is not None:
            function[name] = tool[name]
    return {"type": "function", "function": function}


def _allowed(
    tools: list[dict[str, Any]], choice: dict[str, Any], names: Names
) -> list[dict[str, Any]]:
    """The chat tools an `allowed_tools` choice leaves on offer."""
    allowed = {
        names.get((t.get("namespace") or None, str(t.get("name"))), str(t.get("name")))
        for t in choice.get("tools") or []
    }
    return [t for t in tools if t["function"]["name"] in allowed]


def _tool_choice(choice: Any, names: Names) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom"):
        name = str(choice.get("name"))
        name = names.get((choice.get("namespace") or None, name), name)
        return {"type": "function", "function": {"name": name}}
    raise UpstreamBadRequest(
        "tool_choice: must be auto, none, required or a function", param="tool_choice"
    )
