"""The `/v1/*` endpoints in the published OpenAPI document (`/openapi.json`). They are served
by the raw ASGI proxy, not by FastAPI, so their request and response shapes are declared
here (OpenAI's) and in `openapi_protocols` (Anthropic's Messages, OpenAI's Responses), as models
of what the edge enforces (extra fields pass through), and merged into the admin app's
document."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from gateway.http import openapi_protocols as wire


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ContentPart(_Open):
    type: str


class FunctionCall(_Open):
    name: str
    arguments: str


class ToolCall(_Open):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Open):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None


class FunctionSpec(_Open):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Open):
    type: str = "function"
    function: FunctionSpec | None = None


class StreamOptions(_Open):
    include_usage: bool | None = None


class _Sampling(_Open):
    model: str = Field(min_length=1, description="A route name of the gateway's config.")
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=128)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = Field(None, max_length=4)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None


_Tokens = Annotated[list[int], Field(min_length=1)]
TextOrTokens = str | list[str] | _Tokens | list[_Tokens]


class CompletionRequest(_Sampling):
    prompt: TextOrTokens = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=0)


class EmbeddingRequest(_Open):
    model: str = Field(min_length=1)
    input: TextOrTokens = Field(min_length=1)
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(None, ge=1)


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class CompletionResponse(_Open):
    id: str
    object: str
    created: int
    model: str
    choices: list[dict[str, Any]]


class EmbeddingResponse(_Open):
    object: str
    data: list[dict[str, Any]]
    model: str


class ModelEntry(_Open):
    id: str
    object: Literal["model"]


class ModelList(_Open):
    object: Literal["list"]
    data: list[ModelEntry]


_ERRORS = {
    "400": "Invalid request",
    "401": "Missing or unknown key",
    "403": "Not allowed",
    "404": "Unknown model (route) or path",
    "405": "Wrong method",
    "413": "Body too large",
    "429": "A gateway limit (Retry-After)",
    "500": "A bug of the gateway's",
    "502": "Every target failed",
    "503": "Targets rate-limited, overloaded or ejected (Retry-After)",
    "504": "The latency budget ran out",
}

_POSTS: dict[str, tuple[str, type[BaseModel], type[BaseModel], bool]] = {
    "/v1/chat/completions": ("Chat completions", ChatCompletionRequest, CompletionResponse, True),
    "/v1/completions": ("Completions", CompletionRequest, CompletionResponse, True),
    "/v1/embeddings": ("Embeddings", EmbeddingRequest, EmbeddingResponse, False),
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _responses(
    ok: type[BaseModel],
    streams: bool,
    error_model: type[BaseModel] = ErrorResponse,
    errors: dict[str, str] = _ERRORS,
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _ref(ok)}}
    if streams:
        # `data: {chunk}` events (chat.completion.chunk / text_completion objects) and a
        # final `data: [DONE]`, which is no JSON: so no schema per event.
        content["text/event-stream"] = {"schema": {}}
    error = {"application/json": {"schema": _ref(error_model)}}
    return {
        "200": {"description": "OK", "content": content},
        **{code: {"description": text, "content": error} for code, text in errors.items()},
    }


def _operation(
    summary: str, path: str, responses: dict[str, Any], request: type[BaseModel] | None = None
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": ["openai" if "messages" not in path else "anthropic"],
        "summary": summary,
        "operationId": path.strip("/").replace("/", "_").replace("{", "").replace("}", ""),
        "security": [{"bearer": []}],
        "responses": responses,
    }
    if request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(request)}},
        }
    if "{id}" in path:
        operation["parameters"] = [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
    return operation


def _more_paths() -> dict[str, Any]:
    """Anthropic's Messages and OpenAI's Responses."""

    def anthropic(ok: type[BaseModel], streams: bool) -> dict[str, Any]:
        return _responses(ok, streams, wire.AnthropicErrorResponse, wire.ANTHROPIC_ERRORS)

    stored = "/v1/responses/{id}"
    return {
        "/v1/messages": {"post": _operation(
            "Anthropic Messages", "/v1/messages",
            anthropic(wire.MessageResponse, True), wire.MessagesRequest)},
        "/v1/messages/count_tokens": {"post": _operation(
            "A Messages prompt's token count", "/v1/messages/count_tokens",
            anthropic(wire.TokenCount, False), wire.MessagesCountRequest)},
        "/v1/responses": {"post": _operation(
            "OpenAI Responses", "/v1/responses",
            _responses(wire.ResponseObject, True), wire.ResponsesRequest)},
        stored: {
            "get": _operation("A stored response", stored, _responses(wire.ResponseObject, False)),
            "delete": _operation(
                "Delete a stored response", stored, _responses(wire.ResponseDeleted, False)),
        },
        stored + "/input_items": {"get": _operation(
            "A stored response's input items", stored + "/input_items",
            _responses(wire.InputItems, False))},
    }  # fmt: skip


def _paths() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, (summary, request, response, streams) in _POSTS.items():
        paths[path] = {
            "post": {
                "tags": ["openai"],
                "summary": summary,
                "operationId": path.strip("/").replace("/", "_"),
                "security": [{"bearer": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(request)}},
                },
                "responses": _responses(response, streams),
            }
        }
    paths["/v1/models"] = {
        "get": {
            "tags": ["openai"],
            "summary": "The routes this key may use",
            "operationId": "v1_models",
            "security": [{"bearer": []}],
            "responses": _responses(ModelList, False),
        }
    }
    return {**paths, **_more_paths(), **_health_paths()}


def _health_paths() -> dict[str, Any]:
    """Served as plain ASGI by `gateway.http.health`, outside the admin app."""

    def get(summary: str, media: str, codes: tuple[str, ...]) -> dict[str, Any]:
        answer = {"description": summary, "content": {media: {}}}
        return {
            "get": {
                "tags": ["health"],
                "summary": summary,
                "operationId": summary.lower().replace(" ", "_").replace(",", ""),
                "responses": dict.fromkeys(codes, answer),
            }
        }

    return {
        "/health/live": get("Liveness", "application/json", ("200",)),
        "/health/ready": get("Readiness, with why not", "application/json", ("200", "503")),
        "/metrics": get("Prometheus metrics", "text/plain", ("200",)),
    }


def _schemas() -> dict[str, Any]:
    models: list[type[BaseModel]] = [ErrorResponse, ModelList, *wire.MODELS]
    models += [m for _, request, response, _ in _POSTS.values() for m in (request, response)]
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def with_openai_paths(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """An `openapi()` for `app` whose document also describes the proxy's endpoints."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = FastAPI.openapi(app)
            document["paths"] = {**_paths(), **document["paths"]}
            components = document.setdefault("components", {})
            components.setdefault("schemas", {}).update(_schemas())
            components.setdefault("securitySchemes", {})["bearer"] = {
                "type": "http",
                "scheme": "bearer",
            }
            app.openapi_schema = document
        return app.openapi_schema

    return openapi
