"""The self-hosted vLLM pool (see issue: fallback_engine)."""
