"""The provider interface: one small module per provider, all behind `Provider.complete`.

A provider turns one chat request (messages + the session's seed + an optional JSON schema) into
one reply (text + metadata + the request body actually sent, without any key). The provider table
and each provider's parameter schema are in `vaar.registry` (a leaf module: the config
validates params against it); adding a provider is one module plus one entry there, or a
third-party distribution's entry point.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from vaar.errors import ConfigError, VaarError, format_validation_error
from vaar.registry import GenerationParams, provider_entry, validate_params

if TYPE_CHECKING:
    from vaar.config import ModelSpec


def provider_class(name: str) -> type[Provider]:
    try:
        implementation = provider_entry(name).implementation
    except ValueError as exc:  # unknown, or a plugin that cannot be loaded
        raise ConfigError(str(exc)) from None
    module, cls = implementation.split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:  # a plugin's implementation
        raise ConfigError(f"provider {name!r}: cannot import {implementation}: {exc}") from None


class ProviderError(VaarError):
    """A request that failed for good (after retries, or not retryable)."""


@dataclass(frozen=True)
class ChatRequest:
    messages: list[dict]  # [{"role": "system" | "user" | "assistant", "content": str}]
    seed: int  # per session, set by the session from the study seed
    json_schema: dict | None = None  # the answer schema, used when params.structured is on


@dataclass
class ChatReply:
    text: str
    request: dict  # the body actually sent, with "messages" left out (stored per turn instead)
    meta: dict = field(default_factory=dict)  # model, system_fingerprint, finish_reason, usage
    prompt_tokens: int = 0  # every prompt token, those read from or written to a cache too
    completion_tokens: int = 0  # reasoning tokens included
    cache_read_tokens: int = 0  # of prompt_tokens: read from the provider's prompt cache
    cache_write_tokens: int = 0  # of prompt_tokens: written to it (Anthropic bills these extra)
    reasoning_tokens: int = 0  # of completion_tokens: hidden reasoning
    cached: bool = False  # from vaar's reply cache: nothing paid


class ProviderHooks:
    """What a provider reports while working (retries, rate limits); the runner counts them."""

    def retry(self, reason: str) -> None:  # reason: "429", "5xx", "timeout", "connection"
        pass


class Provider:
    name: ClassVar[str]  # its name in vaar.registry, which holds its parameter schema
    supports_json_schema: ClassVar[bool] = False
    cacheable: ClassVar[bool] = True  # False for providers that are cheap and deterministic

    def __init__(self, spec: ModelSpec, instruments: list, hooks: ProviderHooks | None = None):
        self.spec = spec
        self.instruments = instruments
        self.hooks = hooks or ProviderHooks()
        self.params = parse_params(spec)

    @property
    def model_id(self) -> str:
        return self.spec.model or self.spec.name

    @property
    def base_url(self) -> str:
        return self.spec.base_url or ""

    def resolved_params(self) -> dict[str, Any]:
        """Every parameter that can change an answer (part of the response cache key)."""
        return self.params.model_dump(mode="json")

    async def start(self) -> None:
        """Open connections, check credentials: fail here, before any request."""

    async def close(self) -> None:
        pass

    async def complete(self, request: ChatRequest) -> ChatReply:
        raise NotImplementedError


def parse_params(spec: ModelSpec, index: int | None = None) -> GenerationParams:
    """A model's `params` validated against its provider's schema (the study's validation has
    done this already); ConfigError naming models[i].params.<key>."""
    try:
        return validate_params(spec.provider, spec.params)
    except ValidationError as exc:
        where = f"models[{index}]" if index is not None else f"model {spec.name!r}"
        raise ConfigError(format_validation_error(where, exc, prefix="params")) from None


def check_params(models) -> None:
    """Validate every model's params up front, so a bad study fails before any request."""
    for index, spec in enumerate(models):
        parse_params(spec, index)
