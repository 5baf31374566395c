"""OpenAI's own protocol (chat completions, completions, embeddings): the body is already
the pipeline's form, answers and streams go back as the upstream sent them."""

from __future__ import annotations

from typing import Any

from gateway.error_wire import error_body, protocol_headers
from gateway.errors import SpilloverError
from gateway.pipeline.context import Asked, RequestContext
from gateway.pipeline.ingress.base import ClientProtocol
from gateway.pipeline.ingress.openai_validate import validate
from gateway.pipeline.ports import HeaderList, Headers, Reply
from gateway.pipeline.relay import ClientStream
from gateway.providers.base import UpstreamResponse
from policies.schema_base import Endpoint


class OpenAIProtocol(ClientProtocol):
    ingress = "openai"

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def validate(self, body: Any) -> None:
        validate(self.endpoint, body)

    async def read(self, ctx: RequestContext, body: dict[str, Any], headers: Headers) -> Asked:
        options = body.get("stream_options")
        return Asked(
            body=body,
            stream=bool(body.get("stream")),
            client_wants_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        )

    async def answer(self, ctx: RequestContext, response: UpstreamResponse) -> bytes:
        return response.body

    def stream(self, ctx: RequestContext, upstream: str, client: Reply) -> ClientStream:
        return OpenAIEvents(client)

    def error(self, exc: SpilloverError, request_id: str) -> tuple[int, bytes, HeaderList]:
        return exc.status, error_body(exc), protocol_headers(exc)


class OpenAIEvents:
    """OpenAI-wire events as they come; a failure is an `error` object as the last event."""

    def __init__(self, client: Reply) -> None:
        self.write = client.write
        self.disconnected = client.disconnected

    async def error(self, exc: SpilloverError) -> None:
        await self.write(b"data: " + error_body(exc) + b"\n\n")
