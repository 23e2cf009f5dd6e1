"""Questionnaires as validated data: each instrument is one TOML file in shipped/ with
its citation, provenance, instructions, response options and items. A standardized instrument
must be given with its published wording, so the files are data (not code) and every report
records each file's content hash."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from vaar.errors import ConfigError, VaarError, format_validation_error
from vaar.files import package_path, read_toml

__all__ = [
    "INSTRUMENTS_DIR",
    "OUTCOME_ROLE",
    "PRIVACY",
    "PROSOCIAL",
    "ROLES",
    "SHARING",
    "Role",
    "Instrument",
    "Item",
    "ResponseOption",
    "check_unique_item_ids",
    "instrument_ids",
    "list_instruments",
    "load_instrument",
    "load_instruments",
]

INSTRUMENTS_DIR = package_path("instruments", "shipped")
# What an instrument measures in the vaar model: privacy concern and prosocialness, the values,
# predict the acceptance of data sharing, the action (the model's outcome).
Role = Literal["privacy", "prosocial", "sharing"]
ROLES: tuple[str, ...] = get_args(Role)
PRIVACY, PROSOCIAL, SHARING = ROLES
OUTCOME_ROLE = SHARING

ID_PATTERN = r"^[a-z][a-z0-9_]*$"
FACTOR_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ResponseOption(_Strict):
    """One point of the response scale: the number the model answers with and its label."""

    value: int
    label: Text


class Item(_Strict):
    """One question. `id` is the column name in the wide table; `reverse` items are scored
    scale_min + scale_max - raw so that higher always means more of `factor`."""

    id: str = Field(pattern=ID_PATTERN)
    text: Text
    reverse: bool = False
    factor: str = Field(pattern=FACTOR_PATTERN)


class Instrument(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: Text
    short_title: Text
    role: Role
    citation: Text
    provenance: Text
    vaar_own: bool = False
    instructions: Text
    options: list[ResponseOption] = Field(min_length=2)
    items: list[Item] = Field(min_length=1)

    @model_validator(mode="after")
    def _coherent(self):
        values = [o.value for o in self.options]
        if values != list(range(values[0], values[0] + len(values))):
            raise ValueError(
                f"options: values must be consecutive integers in ascending order, got {values}"
            )
        labels = [o.label.casefold() for o in self.options]
        repeated = sorted({o.label for o in self.options if labels.count(o.label.casefold()) > 1})
        if repeated:
            raise ValueError(f"options: labels must be unique; repeated: {repeated}")
        ids = [i.id for i in self.items]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"items: item ids must be unique; repeated: {repeated}")
        return self

    @property
    def scale_min(self) -> int:
        return self.options[0].value

    @property
    def scale_max(self) -> int:
        return self.options[-1].value

    @property
    def factors(self) -> list[str]:
        """Factor names in order of first appearance among the items."""
        return list(dict.fromkeys(i.factor for i in self.items))

    @property
    def content_hash(self) -> str:
        """sha256 of the canonical JSON of the validated instrument: any change of wording,
        options, keying or metadata changes it, so reports can say exactly what was asked."""
        canonical = json.dumps(
            self.model_dump(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def item(self, item_id: str) -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise VaarError(f"instrument {self.id!r} has no item {item_id!r}")

    def label_for(self, value: int) -> str:
        for option in self.options:
            if option.value == value:
                return option.label
        raise VaarError(
            f"instrument {self.id!r}: {value!r} is not a response option "
            f"({self.scale_min}..{self.scale_max})"
        )

    def score(self, item_id: str, raw: float | None) -> float:
        """The scored answer: raw for normal items, scale_min + scale_max - raw for reverse
        items; a missing answer (None/NaN) stays NaN."""
        item = self.item(item_id)
        if raw is None or (isinstance(raw, float) and math.isnan(raw)):
            return math.nan
        if not self.scale_min <= raw <= self.scale_max:
            raise VaarError(
                f"instrument {self.id!r}, item {item_id!r}: answer {raw!r} is outside the "
                f"scale {self.scale_min}..{self.scale_max}"
            )
        return self.scale_min + self.scale_max - raw if item.reverse else raw


def instrument_ids() -> list[str]:
    """Sorted ids of the shipped instruments (file stems; cheap, parses nothing)."""
    return sorted(p.stem for p in INSTRUMENTS_DIR.glob("*.toml"))


def load_instrument(id_or_path: str | Path) -> Instrument:
    """Load a shipped instrument by id (e.g. "psa") or a user's instrument file by path."""
    text = str(id_or_path)
    if isinstance(id_or_path, Path) or text.endswith(".toml") or "/" in text or "\\" in text:
        path = Path(id_or_path)
        if path.is_dir():
            raise VaarError(f"{path}: is a folder, not an instrument file")
        if not path.is_file():
            raise VaarError(f"{path}: no such instrument file")
        return _load_file(path)
    path = INSTRUMENTS_DIR / f"{text}.toml"
    if not path.is_file():
        raise VaarError(
            f"unknown instrument {text!r} (known: {', '.join(instrument_ids())}; "
            "or give the path of a .toml file)"
        )
    return _load_file(path, expect_id=text)


def list_instruments() -> list[Instrument]:
    """All shipped instruments, sorted by id; item ids must be unique across them."""
    instruments = [load_instrument(i) for i in instrument_ids()]
    check_unique_item_ids(instruments)
    return instruments


def load_instruments(ids_or_paths: list[str | Path]) -> list[Instrument]:
    """A study's instruments, in its order; their item ids (the wide table's columns) must not
    clash."""
    instruments = [load_instrument(i) for i in ids_or_paths]
    check_unique_item_ids(instruments)
    return instruments


def check_unique_item_ids(instruments: list[Instrument]) -> None:
    """Item ids are the wide table's columns, so two instruments may not share one."""
    owner: dict[str, str] = {}
    clashes = []
    for instrument in instruments:
        for item in instrument.items:
            if item.id in owner and owner[item.id] != instrument.id:
                clashes.append(f"{item.id!r} in both {owner[item.id]!r} and {instrument.id!r}")
            owner.setdefault(item.id, instrument.id)
    if clashes:
        raise ConfigError("item ids must be unique across instruments: " + "; ".join(clashes))


def _load_file(path: Path, expect_id: str | None = None) -> Instrument:
    resolved = path.resolve()
    instrument = _parse_cached(str(resolved), resolved.stat().st_mtime_ns)
    if expect_id is not None and instrument.id != expect_id:
        raise ConfigError(
            f"{path}: id: {instrument.id!r} does not match the file name (expected {expect_id!r})"
        )
    return instrument


@functools.lru_cache(maxsize=256)
def _parse_cached(path: str, mtime_ns: int) -> Instrument:
    """Parse once per file version; the mtime in the key makes an edited file reload."""
    raw = read_toml(path, "instrument file")
    try:
        return Instrument.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
