"""Shared fixtures. Each concern keeps its fixtures in its own module and imports them here."""

from fakes.fixtures import fake_llm, smollm2_server  # noqa: F401  (collection: fake + real LLM)
