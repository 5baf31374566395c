"""`kind: litellm` — the long tail (Bedrock, Vertex, Gemini, Cohere, …). litellm is imported
only when such a provider is configured, offline, with its own retries off: retrying is
the attempt stage's job alone."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from gateway.errors import Timeout
from gateway.providers.base import Provider, UpstreamCall, UpstreamResponse, UpstreamStream, Usage
from gateway.providers.litellm_params import ParamFilter, litellm_supported
from gateway.providers.upstream_errors import from_litellm
from policies.schema import LiteLLMProvider

_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_OFFLINE_MODE": "True",
    "LITELLM_LOG": "ERROR",
}


def import_litellm() -> Any:
    for name, value in _OFFLINE_ENV.items():
        os.environ.setdefault(name, value)
    import litellm

    litellm.telemetry = False
    litellm.drop_params = True
    litellm.suppress_debug_info = True
    return litellm


class LiteLLMAdapter(Provider):
    supports = frozenset({"chat", "completions", "embeddings"})

    def __init__(self, name: str, config: LiteLLMProvider) -> None:
        self.name = name
        self._config = config
        self._litellm: Any = None
        self._params = ParamFilter(lambda _model, _endpoint: None)

    async def start(self) -> None:
        if importlib.util.find_spec("litellm") is None:
            raise RuntimeError(
                f"provider {self.name} is kind: litellm, and litellm is not installed: "
                "install spillover[litellm] (or use the image's `full` target)"
            )
        self._litellm = await asyncio.to_thread(import_litellm)
        self._params = ParamFilter(litellm_supported(self._litellm))

    def _kwargs(self, call: UpstreamCall) -> dict[str, Any]:
        # Client fields by allow-list only: a body never chooses a host, header or key.
        kwargs = self._params.keep(call.body, call.model, call.endpoint)
        kwargs.update(self._config.params)
        kwargs["model"] = call.model
        kwargs["max_retries"] = 0
        kwargs["num_retries"] = 0
        kwargs["timeout"] = call.timeouts.total
        if self._config.api_base:
            kwargs["api_base"] = self._config.api_base
        if self._config.api_key is not None:
            kwargs["api_key"] = self._config.api_key.get_secret_value()
        if self._config.headers:
            kwargs["extra_headers"] = dict(self._config.headers)
        return kwargs

    async def send(self, call: UpstreamCall) -> UpstreamResponse | UpstreamStream:
        litellm = self._litellm
        kwargs = self._kwargs(call)
        if call.stream:
            kwargs["stream"] = True
            kwargs["stream_options"] = {"include_usage": True}
        function = {
            "chat": litellm.acompletion,
            "completions": litellm.atext_completion,
            "embeddings": litellm.aembedding,
        }[call.endpoint]
        wait = call.timeouts.first_byte if call.stream else call.timeouts.total
        try:
            async with asyncio.timeout(wait):
                result = await function(**kwargs)
        except TimeoutError:
            raise Timeout(
                "no answer in time", phase="first_byte" if call.stream else "total"
            ) from None
        except Exception as exc:
            raise from_litellm(exc) from None
        if call.stream:
            return _LiteLLMStream(result, call)
        payload = result.model_dump(exclude_none=False)
        usage = Usage.from_openai(payload.get("usage") or {})
        headers = getattr(result, "_response_headers", None) or {}
        return UpstreamResponse(orjson.dumps(payload, default=str), usage, headers)


class _LiteLLMStream(UpstreamStream):
    def __init__(self, stream: Any, call: UpstreamCall) -> None:
        self._stream = stream
        self._call = call
        self.usage = Usage()
        self.headers: Mapping[str, str] = {}
        self._created = int(time.time())

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events()

    async def _events(self) -> AsyncIterator[bytes]:
        iterator = self._stream.__aiter__()
        wait = self._call.timeouts.first_byte
        while True:
            try:
                async with asyncio.timeout(wait):
                    chunk = await iterator.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise Timeout("stream stalled", phase="idle") from None
            except Exception as exc:
                raise from_litellm(exc) from None
            wait = self._call.timeouts.idle
            payload = chunk.model_dump(exclude_none=True)
            usage = payload.pop("usage", None)
            if usage:
                self.usage = Usage.from_openai(usage)
                if self._call.client_wants_usage:
                    yield (
                        b"data: "
                        + orjson.dumps({**payload, "choices": [], "usage": usage}, default=str)
                        + b"\n\n"
                    )
                if not payload.get("choices"):
                    continue
            if payload.get("choices"):
                yield b"data: " + orjson.dumps(payload, default=str) + b"\n\n"
        yield b"data: [DONE]\n\n"

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):  # closing a broken stream must not raise
                await close()
