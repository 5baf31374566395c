"""Provider adapters behind one contract (`base.Provider`)."""

from __future__ import annotations

from collections.abc import Callable

from fallback_engine.metrics import PoolMetrics
from gateway.providers.base import Provider
from policies.pool import VllmPoolProvider
from policies.schema import AnthropicProvider, LiteLLMProvider, OpenAIProvider

ProviderConfig = OpenAIProvider | AnthropicProvider | LiteLLMProvider | VllmPoolProvider
# How a generation gets its providers: `build_provider`, or a fake in the component tests.
ProviderFactory = Callable[[str, ProviderConfig, PoolMetrics | None], Provider]


def build_provider(
    name: str,
    config: ProviderConfig,
    pool_metrics: PoolMetrics | None = None,
) -> Provider:
    if isinstance(config, OpenAIProvider):
        from gateway.providers.openai import OpenAIAdapter

        return OpenAIAdapter(name, config)
    if isinstance(config, AnthropicProvider):
        from gateway.providers.anthropic import AnthropicAdapter

        return AnthropicAdapter(name, config)
    if isinstance(config, VllmPoolProvider):
        from gateway.providers.vllm_pool import VllmPoolAdapter

        return VllmPoolAdapter(name, config, pool_metrics)
    from gateway.providers.litellm import LiteLLMAdapter

    return LiteLLMAdapter(name, config)
