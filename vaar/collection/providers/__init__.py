"""The provider interface: one small module per provider, all behind `Provider.complete`.

A provider turns one chat request (messages + the session's seed + an optional JSON schema) into
one reply (text + metadata + the request body actually sent, without any key). Registration is a
name -> "module:Class" table so that `known_providers()` is cheap (the config imports it while
validating) and adding a provider is one module plus one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaar.errors import ConfigError, VaarError

if TYPE_CHECKING:
    from vaar.config import ModelSpec

_REGISTRY = {
    "simulated": "vaar.collection.providers.simulated:SimulatedProvider",
    "openai": "vaar.collection.providers.openai:OpenAIProvider",
    "anthropic": "vaar.collection.providers.anthropic:AnthropicProvider",
}


def known_providers() -> list[str]:
    return sorted(_REGISTRY)


def provider_class(name: str) -> type[Provider]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown provider {name!r} (known: {', '.join(known_providers())})")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


class ProviderError(VaarError):
    """A request that failed for good (after retries, or not retryable)."""


class GenerationParams(BaseModel):
    """Generation parameters every provider understands; providers extend this with their own
    settings. Unknown keys are errors so that a typo never silently changes a study."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int = Field(64, ge=1, description="per reply")
    top_p: float | None = Field(None, gt=0, le=1)
    structured: bool = Field(False, description="ask for JSON-schema output where supported")


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
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False


class ProviderHooks:
    """What a provider reports while working (retries, rate limits); the runner counts them."""

    def retry(self, reason: str) -> None:  # reason: "429", "5xx", "timeout", "connection"
        pass


class Provider:
    name: ClassVar[str]
    Params: ClassVar[type[GenerationParams]] = GenerationParams
    supports_json_schema: ClassVar[bool] = False
    cacheable: ClassVar[bool] = True  # False for providers that are cheap and deterministic

    def __init__(self, spec: ModelSpec, instruments: list, hooks: ProviderHooks | None = None):
        self.spec = spec
        self.instruments = instruments
        self.hooks = hooks or ProviderHooks()
        self.params = parse_params(self.Params, spec)

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


def parse_params(params_model: type[BaseModel], spec: ModelSpec, index: int | None = None):
    """Validate a model's `params` against its provider; errors name models[i].params.<key>."""
    try:
        return params_model.model_validate(spec.params)
    except ValidationError as exc:
        where = f"models[{index}]" if index is not None else f"model {spec.name!r}"
        lines = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(sorted(params_model.model_fields))
                msg = f"unknown parameter for provider {spec.provider!r} (allowed: {allowed})"
            lines.append(f"{where}.params.{key}: {msg}")
        raise ConfigError("\n".join(lines)) from None


def check_params(models) -> None:
    """Validate every model's params up front, so a bad study fails before any request."""
    for index, spec in enumerate(models):
        parse_params(provider_class(spec.provider).Params, spec, index)
