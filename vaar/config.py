"""The study configuration: one TOML file says which models answer which instruments, how often,
with what history, and how the answers are analysed. Validated by pydantic; every error names
the field and the problem.

This validation is the one `vaar validate`, `collect`, `run` and the service share: provider
params against the provider's schema, base URLs, and (for a study file on this machine, see
`load_study`) the files and folders it names, so a study that validates is one collect accepts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from vaar.errors import ConfigError, VaarError, format_validation_error
from vaar.files import folder_problem, read_text, read_toml
from vaar.invariance import (
    BASELINE,
    INFORMATION_HELP,
    Degenerate,
    Estimator,
    Information,
    Missing,
    StudyLevel,
)
from vaar.protocol import NAME_PATTERN, HistorySpec, MultiverseSpec, VariantSpec, load_personas
from vaar.protocol import check as check_multiverse
from vaar.registry import provider_entry, validate_params

# Validation context key: check the files and folders a study names (its personas, reference and
# output folder) on this machine. Off for configs that come from elsewhere (a store, the service).
CHECK_FILES = "check_files"
# How bootstrap intervals of VAAR are formed (docs/vaar.md, "Intervals"); the first is the default,
# the one with the best coverage measured by bench/bench_alignment.py.
IntervalMethod = Literal["percentile", "basic-z", "basic-est"]
INTERVAL_METHODS: tuple[str, ...] = get_args(IntervalMethod)
# The sign evidence of each path: the Wald z (the default), or the signed likelihood-ratio z of a
# refit with the path fixed at 0 in that group, which does not depend on how the factors are
# identified (docs/vaar.md, "Sign evidence").
SignEvidence = Literal["wald", "lrt"]
EVIDENCE_METHODS: tuple[str, ...] = get_args(SignEvidence)
# The invariance level whose paths VAAR scores: configural, or the highest the ladder supports.
VaarLevel = Literal[BASELINE, "highest"]
VAAR_LEVELS: tuple[str, ...] = get_args(VaarLevel)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _checking_files(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get(CHECK_FILES))


class ModelSpec(Strict):
    """One LLM (one group in the SEM). `params` are generation parameters (temperature,
    max_tokens, seed, top_p, ...) plus provider-specific settings, validated by the provider."""

    name: str = Field(pattern=NAME_PATTERN, description="group label in data and reports")
    provider: str = Field(description="provider plugin: simulated, openai, anthropic, ...")
    model: str | None = Field(None, description="the provider's model id (default: name)")
    base_url: str | None = None
    api_key_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="environment variable with the key"
    )
    params: dict = Field(default_factory=dict)
    concurrency: int = Field(16, ge=1, le=4096, description="sessions in flight at once")
    requests_per_minute: float | None = Field(None, gt=0)
    tokens_per_minute: float | None = Field(None, gt=0)

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        provider_entry(value)  # ValueError: no such provider, or its plugin cannot be loaded
        return value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018  (raises ValueError on a port that is not a number)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} must start with http:// or https:// and name a host")
        return value

    @field_validator("params")
    @classmethod
    def _provider_params(cls, value: dict, info: ValidationInfo) -> dict:
        """Checked against the provider's schema; kept as given (the store's design hash)."""
        if info.data.get("provider"):  # absent when the provider itself is unknown
            validate_params(info.data["provider"], value)
        return value


DEFAULT_SYSTEM_PROMPT = (
    "You are taking part in a survey. Answer every question as yourself, with the number of the "
    "response option that fits you best."
)


class SessionSpec(Strict):
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    items_per_turn: int = Field(1, ge=1, description="1 = one item per chat turn")
    randomize_items: bool = Field(True, description="counterbalance item order per session")
    max_reasks: int = Field(2, ge=0, le=10, description="corrective re-asks for unusable answers")
    personas: str | None = Field(None, description="optional CSV of personas, one per session")
    history: HistorySpec = HistorySpec()

    @field_validator("personas")
    @classmethod
    def _personas_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and _checking_files(info):
            load_personas(value)
        return value


class AnalysisSpec(Strict):
    estimator: Estimator = get_args(Estimator)[0]
    privacy_factors: Literal["instrument", "subscales"] = "instrument"
    levels: list[StudyLevel] = list(get_args(StudyLevel))
    degenerate: Degenerate = get_args(Degenerate)[0]
    missing: Missing = Field(
        get_args(Missing)[0],
        description="continuous data: FIML, or complete sessions only (much faster)",
    )
    information: Information = Field(get_args(Information)[0], description=INFORMATION_HELP)
    vaar_level: VaarLevel = VAAR_LEVELS[0]
    standardized: bool = Field(
        False,
        description="report VAAR on std.all paths (sign evidence "
        "still from est / se: lavaan's std.all SEs cost a refit's time)",
    )
    alpha: float = Field(0.05, gt=0, lt=1)
    evidence: SignEvidence = Field(
        EVIDENCE_METHODS[0],
        description="sign evidence per path: the Wald z, or the signed likelihood-ratio z (one "
        "refit per model x path; the same under every identification of the factors)",
    )
    reference: str | None = Field(None, description="human reference file (default: built in)")
    human_group: str | None = Field(
        None, description="a group of human respondents in the data: its path signs become the "
        "reference, its estimates are reported beside the models', it is not scored"
    )  # fmt: skip
    bootstrap: int = Field(0, ge=0, description="bootstrap draws for VAAR CIs (0 = off)")
    interval_method: IntervalMethod = Field(
        INTERVAL_METHODS[0],
        description="bootstrap interval: percentile of the refits' VAAR, or basic on each path's "
        "z (basic-z) or estimate (basic-est) scale",
    )
    scheduler: str | None = Field(
        None, description="Dask scheduler address for the bootstrap refits (default: local)"
    )
    workers: int | None = Field(
        None, ge=1, description="local worker processes for the bootstrap (default: one per core)"
    )

    def ladder_options(self) -> dict:
        """The keyword arguments of vaar.sem.fit_ladder that this analysis sets: every ladder
        of a study (its own, a multiverse's block-order one) is fitted with the same options."""
        return {
            "estimator": self.estimator,
            "ordered": self.estimator == "WLSMV",
            "levels": list(self.levels),
            "degenerate": self.degenerate,
            "missing": self.missing,
            "information": self.information,
        }

    @field_validator("reference")
    @classmethod
    def _reference_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and _checking_files(info):
            try:
                read_text(value, "reference file")
            except VaarError as exc:
                raise ValueError(str(exc)) from None
        return value


class Study(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    seed: int = 0
    sessions_per_model: int = Field(ge=1)
    instruments: list[str] = Field(min_length=1, description="ids, in the order administered")
    output_dir: str | None = Field(
        None, validate_default=True, description="default: reports/<name>"
    )
    session: SessionSpec = SessionSpec()
    analysis: AnalysisSpec = AnalysisSpec()
    models: list[ModelSpec] = Field(min_length=1)
    # protocol variants (vaar.protocol): a grid of factors and/or named variants
    multiverse: MultiverseSpec | None = None
    variants: list[VariantSpec] = Field(default_factory=list)
    _base_dir: Path | None = PrivateAttr(None)  # the study file's folder: variants' files

    @field_validator("instruments")
    @classmethod
    def _known_instruments(cls, ids: list[str]) -> list[str]:
        from vaar.instruments import instrument_ids

        known = instrument_ids()
        unknown = [i for i in ids if i not in known and not i.endswith(".toml")]
        if unknown:
            raise ValueError(f"unknown instrument(s) {unknown} (known: {', '.join(known)})")
        if len(set(ids)) != len(ids):
            raise ValueError("an instrument is listed twice")
        return ids

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelSpec]) -> list[ModelSpec]:
        names = [m.name for m in models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {dupes}")
        return models

    @field_validator("output_dir")
    @classmethod
    def _output_folder(cls, value: str | None, info: ValidationInfo) -> str | None:
        if _checking_files(info) and "name" in info.data:
            problem = folder_problem(_out_path(value, info.data["name"]))
            if problem:
                raise ValueError(problem + ("" if value else " (the default output_dir)"))
        return value

    @model_serializer(mode="wrap")
    def _without_multiverse(self, handler):
        """A study without variants dumps (and so stores) exactly as before they existed."""
        data = handler(self)
        for key in ("multiverse", "variants"):
            if isinstance(data, dict) and not data.get(key):
                data.pop(key, None)
        return data

    @property
    def out_path(self) -> Path:
        return _out_path(self.output_dir, self.name)

    @property
    def base_dir(self) -> Path | None:
        return self._base_dir


def _out_path(output_dir: str | None, name: str) -> Path:
    return Path(output_dir or f"reports/{name}")


def load_study(path: str | Path, *, check_files: bool = True) -> Study:
    """Read and validate a study TOML file; raise ConfigError naming every bad field.
    `check_files`: also check the files and folders it names (collect and run need them; an
    analysis of a study copied from elsewhere does not)."""
    raw = read_toml(path, "study file")
    return parse_study(raw, source=str(path), check_files=check_files, base_dir=Path(path).parent)


def parse_study(
    raw: dict, source: str = "study", *, check_files: bool = False, base_dir: Path | None = None
) -> Study:
    """Validate a study config (a dict); `check_files` as in load_study; `base_dir`: the folder
    its variants' files are relative to (default: the working folder)."""
    try:
        study = Study.model_validate(raw, context={CHECK_FILES: check_files})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None
    study._base_dir = base_dir
    try:
        check_multiverse(study, check_files)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return study
