"""Admission token estimates: tiktoken for OpenAI models (offline), a heuristic otherwise."""

from __future__ import annotations

from gateway.pipeline.tokens import expected_output, prompt_tokens


def test_openai_models_are_counted_with_the_bundled_encoding() -> None:
    body = {"messages": [{"role": "user", "content": "hello world, this is a test"}]}
    # "hello world, this is a test" is 7 tokens in o200k_base; 3 + 4 framing.
    assert prompt_tokens(body, "gpt-4o") == 7 + 3 + 4
    assert prompt_tokens(body, "gpt-4") == 7 + 3 + 4


def test_other_models_use_four_characters_a_token() -> None:
    body = {"messages": [{"role": "user", "content": "x" * 400}]}
    assert prompt_tokens(body, "claude-sonnet-4-5") == 100 + 3 + 4
    assert expected_output({"max_tokens": 50}, 256) == 50
    assert expected_output({}, 256) == 256
