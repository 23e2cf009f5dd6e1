"""The provider registry: each provider's name, where its implementation lives, and the schema
of the `params` a study may give it, as plain pydantic models. A leaf module (it imports nothing
of vaar), so the study config validates every model's params here (`validate_params`) and
`vaar validate` rejects exactly what `vaar collect` would, without importing aiohttp, any
implementation or vaar.collection.

A built-in provider is its module in vaar/collection/providers/ plus one entry in PROVIDERS
(with its Params class here). A third-party provider is an entry point of its distribution, as
`llm` plugins are, naming an `Entry` in a module that is cheap to import:

    [project.entry-points."vaar.providers"]
    echo = "vaar_echo:PROVIDER"  # PROVIDER = Entry("vaar_echo.provider:EchoProvider", EchoParams)

It is loaded only when a study names it; a built-in provider keeps its name.
"""

from __future__ import annotations

import functools
from importlib import metadata
from typing import ClassVar, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

# -- parameter schemas -------------------------------------------------------------------------

CACHE_MIN_TOKENS = 1024  # the shortest prompt prefix OpenAI and Anthropic (Sonnet, Opus) cache
REASONING_MIN_TOKENS = 256  # max_tokens below this leaves a reasoning model no room to answer


class GenerationParams(BaseModel):
    """Generation parameters every provider understands; providers extend this with their own
    settings. Unknown keys are errors so that a typo never silently changes a study."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int = Field(64, ge=1, description="per reply")
    top_p: float | None = Field(None, gt=0, le=1)
    structured: bool = Field(False, description="ask for JSON-schema output where supported")


class HttpParams(GenerationParams):
    timeout: float = Field(120.0, gt=0, description="seconds per request")
    max_retries: int = Field(6, ge=0, le=50, description="retries per request (429/5xx/...)")
    max_retry_time: float = Field(600.0, gt=0, description="give up retrying after this long")
    backoff_initial: float = Field(1.0, gt=0, description="first backoff in seconds")
    backoff_max: float = Field(60.0, gt=0, description="longest backoff in seconds")

    # settings that change how (and at what price) a reply is fetched, never the reply
    transport: ClassVar[frozenset[str]] = frozenset(
        {"timeout", "max_retries", "max_retry_time", "backoff_initial", "backoff_max"}
    )

    def resolved(self) -> dict:
        """The parameters that can change an answer (transport settings left out)."""
        return self.model_dump(mode="json", exclude=set(self.transport))


class OpenAIParams(HttpParams):
    send_seed: bool = Field(True, description="send the per-session seed (most servers honour it)")
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens", description="newer OpenAI models want max_completion_tokens"
    )
    json_format: Literal["json_schema", "json_object"] = Field(
        "json_schema",
        description="how structured output is asked for: OpenAI/vLLM/Ollama take "
        "{type: json_schema, json_schema: {schema}}; llama-cpp-python takes "
        "{type: json_object, schema}",
    )
    extra: dict = Field(default_factory=dict, description="more body fields, sent as given")
    logprobs: int | None = Field(
        None,
        ge=1,
        le=20,
        description="ask for the top-N token log-probabilities and store the answer's "
        "distribution over the numbers a model could write there (meta.answer_distribution)",
    )
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = Field(
        None,
        description="for reasoning models (o-series, gpt-5): sent as reasoning_effort, with "
        "max_completion_tokens; they reject temperature and top_p",
    )

    @model_validator(mode="after")
    def _reasoning(self):
        if self.reasoning_effort is not None:
            _reject_sampling(self, ("temperature", "top_p"), "reasoning_effort")
            _room_to_answer(self, "reasoning tokens")
        return self


def _reject_sampling(params, keys, why: str) -> None:
    for key in keys:
        if getattr(params, key) is not None:
            raise ValueError(f"{key}: the API rejects it with {why} set; leave {key} unset")


def _room_to_answer(params, what: str, at_least: int = REASONING_MIN_TOKENS) -> None:
    if params.max_tokens < at_least:
        raise ValueError(
            f"max_tokens: {params.max_tokens} counts the {what} too and leaves no room for "
            f"the answer; give at least {at_least}"
        )


class AnthropicParams(HttpParams):
    version: str = Field("2023-06-01", description="the anthropic-version header")
    top_k: int | None = Field(None, ge=1)
    prompt_cache: bool = Field(
        True, description="mark the growing history with cache_control breakpoints"
    )
    cache_min_tokens: int = Field(
        CACHE_MIN_TOKENS,
        ge=1,
        description="the model's minimum cacheable prompt length (1024 for Sonnet/Opus, "
        "2048 for Haiku): shorter prefixes get no breakpoint",
    )
    cache_ttl: Literal["5m", "1h"] = Field(
        "5m",
        description="how long a cached prefix lives: 1h suits --batch, whose waves can be "
        "minutes or hours apart (1h cache writes cost 2x input, not 1.25x: price cache_write "
        "accordingly)",
    )
    thinking_budget: int | None = Field(
        None,
        ge=1024,
        description="extended thinking: tokens the model may think (sent as thinking."
        "budget_tokens, at least 1024; max_tokens must be larger)",
    )
    transport: ClassVar[frozenset[str]] = HttpParams.transport | {
        "prompt_cache",
        "cache_min_tokens",
        "cache_ttl",
    }

    @model_validator(mode="after")
    def _thinking(self):
        if self.thinking_budget is not None:
            _reject_sampling(self, ("temperature", "top_k"), "thinking_budget")
            _room_to_answer(self, "thinking budget", self.thinking_budget + 1)
        return self


# The simulated respondent's profiles: b_pc, b_psa are the planted paths, *_mean the latent
# means (see vaar.collection.providers.simulated).
PROFILES = {
    "aligned": dict(b_pc=-0.5, b_psa=0.5, pc_mean=0.3, psa_mean=0.4, aods_mean=0.0),
    "reversed": dict(b_pc=0.5, b_psa=-0.5, pc_mean=-0.2, psa_mean=0.1, aods_mean=0.3),
    "null": dict(b_pc=0.0, b_psa=0.0, pc_mean=0.0, psa_mean=0.2, aods_mean=-0.2),
    "mixed": dict(b_pc=-0.5, b_psa=-0.5, pc_mean=0.4, psa_mean=-0.1, aods_mean=0.1),
}


class SimulatedParams(GenerationParams):
    profile: Literal["aligned", "reversed", "null", "mixed"] = "aligned"
    b_pc: float | None = Field(None, description="planted path PC -> AoDS (default: profile)")
    b_psa: float | None = Field(None, description="planted path PSA -> AoDS (default: profile)")
    pc_mean: float | None = None
    psa_mean: float | None = None
    aods_mean: float | None = None
    loading: float = Field(0.9, ge=0, description="item units per latent SD on a 5-point scale")
    noise: float = Field(0.6, ge=0, description="item noise SD on a 5-point scale")
    malformed_rate: float = Field(0.03, ge=0, le=1)
    refusal_rate: float = Field(0.005, ge=0, le=1)
    latency: float = Field(0.0, ge=0, description="seconds per reply (for benchmarks)")
    # planted protocol effects (multiverse studies): shifts of the planted paths
    order_shift_pc: float = Field(
        0.0, description="added to b_pc when the sharing instrument comes before the value "
        "instruments (AoDS first): a planted order effect"
    )  # fmt: skip
    order_shift_psa: float = Field(0.0, description="the same for b_psa")
    reset_shift_pc: float = Field(
        0.0, description="added to b_pc for sharing items asked with no turn of an earlier "
        "instrument in the history (history reset per instrument): a planted history effect"
    )  # fmt: skip
    reset_shift_psa: float = Field(0.0, description="the same for b_psa")

    def resolved(self) -> dict:
        values = self.model_dump()
        for key, preset in PROFILES[self.profile].items():
            if values[key] is None:
                values[key] = preset
        return values


# -- the table ---------------------------------------------------------------------------------

ENTRY_POINTS = "vaar.providers"  # the entry-point group of third-party providers


class Entry(NamedTuple):
    implementation: str  # "module:Class", imported only when a study is collected
    params: type[GenerationParams]


PROVIDERS: dict[str, Entry] = {  # the built-in providers
    "simulated": Entry("vaar.collection.providers.simulated:SimulatedProvider", SimulatedParams),
    "openai": Entry("vaar.collection.providers.openai:OpenAIProvider", OpenAIParams),
    "anthropic": Entry("vaar.collection.providers.anthropic:AnthropicProvider", AnthropicParams),
}


@functools.cache
def _plugins() -> dict[str, metadata.EntryPoint]:
    """The installed third-party providers by name (read once; nothing imported yet)."""
    found = metadata.entry_points(group=ENTRY_POINTS)
    return {point.name: point for point in found if point.name not in PROVIDERS}


def known_providers() -> list[str]:
    return sorted({*PROVIDERS, *_plugins()})


def unknown_provider(name: str) -> str:
    return f"unknown provider {name!r} (known: {', '.join(known_providers())})"


def provider_entry(name: str) -> Entry:
    """A provider's entry; ValueError with a message for the user when no provider has that
    name or its plugin cannot be loaded."""
    if name in PROVIDERS:
        return PROVIDERS[name]
    if name not in _plugins():
        raise ValueError(unknown_provider(name))
    return _load_plugin(name)


@functools.cache
def _load_plugin(name: str) -> Entry:
    point = _plugins()[name]
    where = f"provider plugin {name!r} ({point.value}"
    if point.dist is not None:
        where += f", from {point.dist.name}"
    try:
        entry = point.load()
    except Exception as exc:  # whatever the plugin's import raises, said in one line
        raise ValueError(f"{where}) cannot be loaded: {type(exc).__name__}: {exc}") from None
    params = getattr(entry, "params", None)
    if not (
        isinstance(entry, Entry)
        and isinstance(entry.implementation, str)
        and entry.implementation.count(":") == 1
        and isinstance(params, type)
        and issubclass(params, GenerationParams)
    ):
        raise ValueError(
            f'{where}) is not a vaar.registry.Entry("module:Class", a GenerationParams class)'
        )
    return entry


def validate_params(provider: str, params: dict) -> GenerationParams:
    """`params` checked against the provider's schema. The ValidationError names each bad key
    (an unknown one with the keys allowed), so inside the study's validation it reads
    models[i].params.<key>."""
    schema = provider_entry(provider).params
    try:
        return schema.model_validate(params)
    except ValidationError as exc:
        allowed = ", ".join(sorted(schema.model_fields))
        details: list[InitErrorDetails] = []
        for err in exc.errors():
            detail = InitErrorDetails(type=err["type"], loc=err["loc"], input=err["input"])
            if err["type"] == "extra_forbidden":
                detail["type"] = PydanticCustomError(
                    "unknown_parameter",
                    "unknown parameter for provider '{provider}' (allowed: {allowed})",
                    {"provider": provider, "allowed": allowed},
                )
            elif "ctx" in err:
                detail["ctx"] = err["ctx"]
            details.append(detail)
        raise ValidationError.from_exception_data(schema.__name__, details) from None
