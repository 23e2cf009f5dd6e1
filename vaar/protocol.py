"""The protocol of a study's sessions as data: the history policy, the personas file, and the
factors a multiverse study varies (docs/collection.md, "Multiverse").

A study may declare a grid (`[multiverse]`: each factor a list of levels, crossed) and/or
named variants (`[[variants]]`: each sets some factors). Every variant is run for every model;
a (model x variant) pair is one condition with its own sessions. This module holds the schema
of both, their expansion into named variants, each variant's descriptor (factor -> level label,
for every factor), what a variant's sessions ask (`resolve`), and the checks that need the
whole study (`check`). A leaf module: vaar.config imports it and it imports nothing of vaar but
the errors, the files, the instruments and the provider registry.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from vaar.errors import VaarError
from vaar.files import read_text, read_toml

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # model and variant names: labels in the data


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HistorySpec(_Strict):
    """The bounded, history-carrying session: what earlier turns each new item sees."""

    mode: Literal["session", "last_k", "instrument"] = Field(
        "session", description="whole session, last k turns, or reset at each instrument"
    )
    last_k: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=64, description="drop oldest turns beyond this")

    @model_validator(mode="after")
    def _last_k_needs_k(self):
        if self.mode == "last_k" and self.last_k is None:
            raise ValueError("mode 'last_k' needs last_k (a number of turns)")
        return self


def load_personas(path: str | Path) -> list[str]:
    """Personas from a CSV (column 'persona', else the first column), one per session in turn;
    ValueError saying what is wrong with the file."""
    try:
        text = read_text(path, "personas file")
    except VaarError as exc:
        raise ValueError(str(exc)) from None
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if not rows:
        raise ValueError(f"{path} has no rows")
    column = "persona" if "persona" in rows[0] else next(iter(rows[0]))
    personas = [(row.get(column) or "").strip() for row in rows]
    empty = [n + 2 for n, p in enumerate(personas) if not p]
    if empty:
        raise ValueError(f"{path}: empty persona on line(s) {empty[:5]}")
    return personas


# -- the factors -------------------------------------------------------------------------------

# Named block orders (a block order may also be a list of the study's instrument ids).
BLOCK_ORDERS = ("study", "paper", "reversed", "sharing_first")
PAPER_ROLES = ("privacy", "prosocial", "sharing")  # the paper's order: privacy -> PSA -> AoDS
FACTORS: dict[str, Any] = {  # factor -> the type of one level
    "block_order": str | list[str],
    "item_order": Literal["fixed", "shuffled"],
    "history": Literal["session", "instrument"] | HistorySpec,
    "items_per_turn": Annotated[int, Field(ge=1)],
    "temperature": Annotated[float, Field(ge=0, le=2)],
    "system_prompt": str,  # a UTF-8 text file
    "instructions": str,  # a text file (every instrument) or TOML: instrument id = "text"
    "personas": str,  # a CSV file, as session.personas
}
FILE_FACTORS = ("system_prompt", "instructions", "personas")  # paths relative to the study file
STUDY_LEVEL = "study"  # the label of a file factor (or temperature) left at the study's setting
MAX_CONDITIONS = 200  # models x variants beyond this need multiverse.max_conditions


class _Factors(_Strict):
    @model_validator(mode="before")
    @classmethod
    def _known_factors(cls, raw):
        if isinstance(raw, dict):
            unknown = [key for key in raw if key not in cls.model_fields]
            if unknown:
                raise ValueError(f"unknown factor {unknown[0]!r} (known: {', '.join(FACTORS)})")
        return raw


VariantSpec = create_model(
    "VariantSpec",
    __base__=_Factors,
    __doc__="One named variant: the factors it sets; the others keep the study's setting.",
    name=(str, Field(pattern=NAME_PATTERN, description="label in session ids, tables, report")),
    **{factor: (kind | None, None) for factor, kind in FACTORS.items()},
)
MultiverseSpec = create_model(
    "MultiverseSpec",
    __base__=_Factors,
    __doc__="A grid: each factor given a list of levels; every combination is one variant.",
    max_conditions=(int, Field(MAX_CONDITIONS, ge=1, description="confirm a larger grid")),
    **{factor: (list[kind] | None, Field(None, min_length=1)) for factor, kind in FACTORS.items()},
)


@dataclass(frozen=True)
class Variant:
    """One variant of the protocol: its name and the levels of the factors it sets."""

    name: str
    settings: dict[str, Any]  # factor -> level (as validated), only the factors it sets


def is_multiverse(study) -> bool:
    return study.multiverse is not None or bool(study.variants)


def _grid(multiverse) -> list[tuple[str, list]]:
    if multiverse is None:
        return []
    return [(f, getattr(multiverse, f)) for f in FACTORS if getattr(multiverse, f) is not None]


def variants(study) -> list[Variant]:
    """The study's variants: the grid's combinations (named by the levels of the factors that
    vary, joined by '.'), then the named variants; [] for a study without multiverse."""
    grid = _grid(study.multiverse)
    out = []
    if grid:
        varying = [f for f, levels in grid if len(levels) > 1] or [f for f, _ in grid]
        for combination in itertools.product(*(levels for _, levels in grid)):
            settings = dict(zip((f for f, _ in grid), combination, strict=True))
            name = ".".join(_level_name(f, settings[f]) for f in varying)
            out.append(Variant(name, settings))
    for spec in study.variants:
        set_here = {f: getattr(spec, f) for f in FACTORS if getattr(spec, f) is not None}
        out.append(Variant(spec.name, set_here))
    return out


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "x"


def _level_name(factor: str, level) -> str:
    """A level's part of a grid variant's name (safe in a NAME_PATTERN name)."""
    if factor in FILE_FACTORS:
        return _safe(Path(level).stem)
    if factor == "block_order":
        return level if isinstance(level, str) else "-".join(_safe(Path(e).stem) for e in level)
    if factor == "history":
        return history_label(level) if isinstance(level, HistorySpec) else level
    if factor == "items_per_turn":
        return f"{level}-per-turn"
    if factor == "temperature":
        return f"t{level:g}"
    return str(level)


def _history(level, base: HistorySpec) -> HistorySpec:
    """A history level as a policy: a table is one; a mode's name keeps the study's cap."""
    if isinstance(level, HistorySpec):
        return level
    return base.model_copy(update={"mode": level, "last_k": None})


def history_label(history: HistorySpec) -> str:
    label = f"last{history.last_k}" if history.mode == "last_k" else history.mode
    return label + (f"-max{history.max_tokens}" if history.max_tokens else "")


# -- what a variant asks -----------------------------------------------------------------------


def block_order(level, instruments, listed: list[str]) -> list:
    """The instruments in the order `level` names: a named order (BLOCK_ORDERS) or a list of
    the study's instrument ids (or entries as listed); ValueError if it is not a permutation."""
    if isinstance(level, str):
        if level == "study":
            return list(instruments)
        if level == "reversed":
            return list(reversed(instruments))
        if level == "paper":
            return sorted(instruments, key=lambda i: PAPER_ROLES.index(i.role))
        if level == "sharing_first":
            return sorted(instruments, key=lambda i: i.role != "sharing")
        raise ValueError(
            f"unknown block order {level!r} (named orders: {', '.join(BLOCK_ORDERS)}; or a "
            "list of the study's instrument ids)"
        )
    position = {e: k for k, e in enumerate(listed)} | {i.id: k for k, i in enumerate(instruments)}
    order = [position.get(entry) for entry in level]
    if None in order or sorted(order) != list(range(len(instruments))):
        ids = [i.id for i in instruments]
        raise ValueError(f"{level} is not an order of the study's instruments {ids}")
    return [instruments[k] for k in order]


def factor_file(study, path: str) -> Path:
    """A file a variant names, relative to the study file (else to the working folder)."""
    base = getattr(study, "base_dir", None)
    return Path(path) if base is None or Path(path).is_absolute() else base / path


def read_factor(study, factor: str, path: str, instruments=None):
    """A file factor's content: the system prompt text, the personas, or the instructions
    (one text for every instrument, or a TOML table instrument id -> text); ValueError."""
    file = factor_file(study, path)
    if factor == "personas":
        return load_personas(file)
    try:
        if factor == "instructions" and file.suffix == ".toml":
            table = read_toml(file, "instructions file")
        else:
            text = read_text(file, f"{factor.replace('_', ' ')} file").strip()
            if not text:
                raise ValueError(f"{file} is empty")
            return text
    except VaarError as exc:
        raise ValueError(str(exc)) from None
    ids = [i.id for i in instruments] if instruments is not None else None
    bad = [k for k, v in table.items() if not (isinstance(v, str) and v.strip())]
    unknown = [k for k in table if ids is not None and k not in ids]
    if bad or unknown or not table:
        raise ValueError(
            f'{file}: expected instrument id = "instructions" for the study\'s instruments '
            f"{ids}" + (f"; not one: {(unknown or bad)[0]!r}" if bad or unknown else "")
        )
    return {k: v.strip() for k, v in table.items()}


@dataclass(frozen=True)
class Resolved:
    """What the sessions of one variant ask: the session settings (vaar.config.SessionSpec),
    the instruments in order with their instructions, the personas and the temperature."""

    session: Any
    instruments: list
    personas: list[str] | None  # None: the study's own
    temperature: float | None  # None: each model's own


def resolve(study, variant: Variant, instruments) -> Resolved:
    """A variant applied to the study's session settings and instruments (reads its files)."""
    s = variant.settings
    base = study.session
    update: dict[str, Any] = {}
    if "item_order" in s:
        update["randomize_items"] = s["item_order"] == "shuffled"
    if "items_per_turn" in s:
        update["items_per_turn"] = s["items_per_turn"]
    if "history" in s:
        update["history"] = _history(s["history"], base.history)
    if "system_prompt" in s:
        update["system_prompt"] = read_factor(study, "system_prompt", s["system_prompt"])
    ordered = block_order(s.get("block_order", "study"), instruments, study.instruments)
    if "instructions" in s:
        texts = read_factor(study, "instructions", s["instructions"], instruments)
        ordered = [
            i.model_copy(update={"instructions": texts if isinstance(texts, str) else
                                 texts.get(i.id, i.instructions)})
            for i in ordered
        ]  # fmt: skip
    personas = read_factor(study, "personas", s["personas"]) if "personas" in s else None
    return Resolved(base.model_copy(update=update), ordered, personas, s.get("temperature"))


def factors(study, variant: Variant, instruments) -> dict[str, str]:
    """The variant's descriptor: factor -> level label for every factor (the study's own
    setting for those it leaves). Equal protocols get equal labels: a block order is its
    instrument ids joined by '-', a history policy e.g. 'session', 'instrument', 'last2'."""
    s = variant.settings
    session = study.session
    order = block_order(s.get("block_order", "study"), instruments, study.instruments)
    history = _history(s.get("history", session.history), session.history)
    shuffled = s.get("item_order", "shuffled" if session.randomize_items else "fixed")
    labels = {
        "block_order": "-".join(i.id for i in order),
        "item_order": shuffled,
        "history": history_label(history),
        "items_per_turn": str(s.get("items_per_turn", session.items_per_turn)),
        "temperature": f"{s['temperature']:g}" if "temperature" in s else STUDY_LEVEL,
    }
    for factor in FILE_FACTORS:
        labels[factor] = _level_name(factor, s[factor]) if factor in s else STUDY_LEVEL
    return {factor: labels[factor] for factor in FACTORS}


# -- checks that need the whole study ----------------------------------------------------------


def _declared(study):
    """(field, factor, level) for every level the study declares."""
    for factor, levels in _grid(study.multiverse):
        for k, level in enumerate(levels):
            yield f"multiverse.{factor}[{k}]", factor, level
    for n, spec in enumerate(study.variants):
        for factor in FACTORS:
            if getattr(spec, factor) is not None:
                yield f"variants[{n}].{factor}", factor, getattr(spec, factor)


def check(study, check_files: bool) -> None:
    """The multiverse's checks beyond each field's own: something to vary, the number of
    conditions, unique variant names, temperatures the models' providers accept, block orders
    that are orders of the study's instruments and (with `check_files`) the files it names.
    ValueError "field: problem"."""
    if not is_multiverse(study):
        return
    grid = _grid(study.multiverse)
    if not grid and not study.variants:
        raise ValueError(f"multiverse: no factor to vary (give one of: {', '.join(FACTORS)})")
    n_variants = math.prod(len(levels) for _, levels in grid) * bool(grid) + len(study.variants)
    cap = study.multiverse.max_conditions if study.multiverse else MAX_CONDITIONS
    total = n_variants * len(study.models)
    if total > cap:
        raise ValueError(
            f"multiverse: {len(study.models)} models x {n_variants} variants = {total} "
            f"conditions, more than max_conditions = {cap}; set multiverse.max_conditions = "
            f"{total} to run them all"
        )
    names = [v.name for v in variants(study)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"variants: variant names must be unique; repeated: {repeated}")
    instruments = _instruments(study)
    for where, factor, level in _declared(study):
        if factor == "temperature":
            _check_temperature(study, where, level)
        elif factor == "block_order" and (instruments is not None or isinstance(level, str)):
            try:
                block_order(level, instruments or [], study.instruments)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
        elif factor in FILE_FACTORS and check_files:
            try:
                read_factor(study, factor, level, instruments)
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None


def _instruments(study):
    """The study's instruments, or None when they cannot be loaded here (their own error is
    reported where they are used)."""
    from vaar.instruments import load_instruments

    try:
        return load_instruments(study.instruments)
    except VaarError:
        return None


def _check_temperature(study, where: str, temperature: float) -> None:
    from vaar.registry import validate_params

    for model in study.models:
        try:
            validate_params(model.provider, {**model.params, "temperature": temperature})
        except ValidationError as exc:
            problem = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise ValueError(f"{where}: model {model.name!r}: {problem}") from None
