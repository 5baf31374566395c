"""A fake upstream that speaks the OpenAI or the Anthropic wire format, with fault knobs."""
