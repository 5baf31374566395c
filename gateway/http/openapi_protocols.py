"""The Anthropic Messages and OpenAI Responses endpoints in `/openapi.json`: their request
shapes as the edge validates them (extra fields pass), their answers and error shapes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Block(_Open):
    type: str


class TextBlock(_Open):
    type: Literal["text"]
    text: str


class AnthropicMessage(_Open):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class AnthropicTool(_Open):
    name: str
    input_schema: dict[str, Any] | None = None


class MessagesCountRequest(_Open):
    model: str = Field(min_length=1, description="A route name of the gateway's config.")
    messages: list[AnthropicMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[AnthropicTool] | None = None


class MessagesRequest(MessagesCountRequest):
    max_tokens: int = Field(ge=1)
    stream: bool | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    stop_sequences: list[str] | None = Field(None, max_length=64)


class MessageResponse(_Open):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    content: list[dict[str, Any]]
    model: str
    usage: dict[str, Any]


class TokenCount(BaseModel):
    input_tokens: int


class AnthropicErrorDetail(BaseModel):
    type: str
    message: str


class AnthropicErrorResponse(BaseModel):
    type: Literal["error"]
    error: AnthropicErrorDetail
    request_id: str | None = None


class ResponsesRequest(_Open):
    model: str = Field(min_length=1, description="A route name of the gateway's config.")
    input: str | list[dict[str, Any]] = Field(min_length=1)
    instructions: str | None = None
    previous_response_id: str | None = None
    store: bool | None = None
    stream: bool | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)


class ResponseObject(_Open):
    id: str
    object: Literal["response"]
    status: str
    output: list[dict[str, Any]]


class ResponseDeleted(BaseModel):
    id: str
    object: Literal["response"]
    deleted: bool


class InputItems(_Open):
    object: Literal["list"]
    data: list[dict[str, Any]]


ANTHROPIC_ERRORS = {
    "400": "Invalid request (invalid_request_error)",
    "401": "Missing or unknown key (authentication_error)",
    "403": "Not allowed (permission_error)",
    "404": "Unknown model (not_found_error)",
    "405": "Wrong method",
    "413": "Body too large (request_too_large)",
    "429": "A gateway limit (rate_limit_error, retry-after)",
    "500": "A bug of the gateway's (api_error)",
    "502": "Every target failed (api_error)",
    "504": "The latency budget ran out (api_error)",
    "529": "Every target overloaded or rate-limited, or no row can be kept (overloaded_error)",
}
MODELS: list[type[BaseModel]] = [
    MessagesRequest, MessagesCountRequest, MessageResponse, TokenCount, AnthropicErrorResponse,
    ResponsesRequest, ResponseObject, ResponseDeleted, InputItems,
]  # fmt: skip
