"""Which client fields may reach litellm. litellm takes connection, credential, routing and
test settings (`api_base`, `base_url`, `api_key`, `extra_headers`, `custom_llm_provider`,
`mock_response`, …) as keyword arguments beside the request's own parameters, so a body
passed through as keywords lets a client send the provider's key to a host of its choice.

The rule is an allow-list: only the OpenAI request parameters of the endpoint, and of those
only the ones litellm maps for the target's provider, are handed over; everything else is
dropped. Connection and credential settings come only from the config."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from policies.schema_base import Endpoint

# The OpenAI request parameters of each endpoint (the API reference), minus `model`,
# `stream` and `stream_options`, which the adapter sets itself.
OPENAI_PARAMS: Mapping[Endpoint, frozenset[str]] = {
    "chat": frozenset(
        {
            "messages",
            "audio",
            "frequency_penalty",
            "function_call",
            "functions",
            "logit_bias",
            "logprobs",
            "max_completion_tokens",
            "max_tokens",
            "modalities",
            "n",
            "parallel_tool_calls",
            "prediction",
            "presence_penalty",
            "prompt_cache_key",
            "reasoning_effort",
            "response_format",
            "safety_identifier",
            "seed",
            "service_tier",
            "stop",
            "store",
            "temperature",
            "tool_choice",
            "tools",
            "top_logprobs",
            "top_p",
            "user",
            "web_search_options",
        }
    ),
    "completions": frozenset(
        {
            "prompt",
            "best_of",
            "echo",
            "frequency_penalty",
            "logit_bias",
            "logprobs",
            "max_tokens",
            "n",
            "presence_penalty",
            "seed",
            "stop",
            "suffix",
            "temperature",
            "top_p",
            "user",
        }
    ),
    "embeddings": frozenset({"input", "dimensions", "encoding_format", "user"}),
}

# Always passed, whatever litellm lists for the provider: the payload itself, and the
# fields its chat-parameter list never names (litellm maps them for every provider).
_ALWAYS: Mapping[Endpoint, frozenset[str]] = {
    "chat": frozenset({"messages"}),
    "completions": frozenset({"prompt", "best_of", "echo", "suffix"}),
    "embeddings": OPENAI_PARAMS["embeddings"],
}

SupportedParams = Callable[[str, Endpoint], list[str] | None]


class ParamFilter:
    """The allowed client fields per (model, endpoint), worked out once and kept."""

    def __init__(self, supported: SupportedParams) -> None:
        self._supported = supported
        self._allowed: dict[tuple[str, Endpoint], frozenset[str]] = {}

    def allowed(self, model: str, endpoint: Endpoint) -> frozenset[str]:
        key = (model, endpoint)
        allowed = self._allowed.get(key)
        if allowed is None:
            openai = OPENAI_PARAMS[endpoint]
            mapped = self._supported(model, endpoint)
            # litellm maps no list for some providers: then only the payload itself passes.
            allowed = openai & (frozenset(mapped or ()) | _ALWAYS[endpoint])
            self._allowed[key] = allowed
        return allowed

    def keep(self, body: Mapping[str, Any], model: str, endpoint: Endpoint) -> dict[str, Any]:
        allowed = self.allowed(model, endpoint)
        return {name: value for name, value in body.items() if name in allowed}


def litellm_supported(litellm: Any) -> SupportedParams:
    """litellm's own list of the OpenAI parameters it maps for a model's provider."""

    def supported(model: str, endpoint: Endpoint) -> list[str] | None:
        try:
            _, provider, _, _ = litellm.get_llm_provider(model)
            request_type = "embeddings" if endpoint == "embeddings" else "chat_completion"
            params = litellm.get_supported_openai_params(
                model=model, custom_llm_provider=provider, request_type=request_type
            )
        except Exception:  # an unknown model or provider: nothing but the payload passes
            return None
        return list(params) if params else None

    return supported
