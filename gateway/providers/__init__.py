"""Provider adapters behind one contract (`base.Provider`)."""

from __future__ import annotations

from gateway.providers.base import Provider
from policies.schema import AnthropicProvider, LiteLLMProvider, OpenAIProvider


def build_provider(
    name: str, config: OpenAIProvider | AnthropicProvider | LiteLLMProvider
) -> Provider:
    if isinstance(config, OpenAIProvider):
        from gateway.providers.openai import OpenAIAdapter

        return OpenAIAdapter(name, config)
    if isinstance(config, AnthropicProvider):
        from gateway.providers.anthropic import AnthropicAdapter

        return AnthropicAdapter(name, config)
    from gateway.providers.litellm import LiteLLMAdapter

    return LiteLLMAdapter(name, config)
