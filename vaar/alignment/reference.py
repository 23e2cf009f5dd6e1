"""The human reference: which sign each structural path into data sharing has in people.

Kept as a data file (human_signs.toml, next to this module) so users can read the citations,
edit the signs, or replace them with signs estimated from a human group in their own data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaar.errors import ConfigError, VaarError, format_validation_error
from vaar.files import package_path, read_toml
from vaar.instruments import OUTCOME_ROLE, Role
from vaar.invariance import BASELINE
from vaar.sem.model import StructuralPath

DEFAULT_REFERENCE = package_path("alignment", "human_signs.toml")
FACTOR_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignEntry(_Strict):
    sign: Literal[-1, 1]
    rationale: str = ""
    citations: list[str] = Field(default_factory=list)


class PathEntry(SignEntry):
    lhs: str = Field(pattern=FACTOR_PATTERN)
    rhs: str = Field(pattern=FACTOR_PATTERN)


class Reference(_Strict):
    """Expected signs by role, with per-factor and per-path overrides (most specific wins)."""

    title: str = "human reference"
    outcome_role: Role = OUTCOME_ROLE
    roles: dict[Role, SignEntry] = Field(default_factory=dict)
    factors: dict[str, SignEntry] = Field(default_factory=dict)
    paths: list[PathEntry] = Field(default_factory=list)
    source: str = Field("", description="file it was read from, or the human group's name")
    human_group: str | None = Field(None, description="data group the signs came from")

    def lookup(self, path) -> SignEntry:
        """The entry that sets the expected sign of `path`; VaarError if none does."""
        lhs, rhs, role = _as_path(path)
        for entry in self.paths:
            if entry.lhs == lhs and entry.rhs == rhs:
                return entry
        if rhs in self.factors:
            return self.factors[rhs]
        if role in self.roles:
            return self.roles[role]
        raise VaarError(
            f"reference {self.source or self.title!r} has no expected sign for path "
            f"{lhs} ~ {rhs} (role {role!r}); add [factors.{rhs}] or [roles.{role}] to it"
        )

    def expected_sign(self, path) -> int:
        return self.lookup(path).sign

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")


def _as_path(path) -> StructuralPath:
    """A StructuralPath from one, or from a plain (lhs, rhs, role) tuple."""
    return path if isinstance(path, StructuralPath) else StructuralPath(*path)


def load_reference(path: str | Path | None = None) -> Reference:
    """Read and validate a reference file (default: the built-in human_signs.toml)."""
    path = Path(path) if path else DEFAULT_REFERENCE
    raw = read_toml(path, "reference file")
    raw.setdefault("source", str(path))
    try:
        reference = Reference.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None
    if not (reference.roles or reference.factors or reference.paths):
        raise ConfigError(f"{path}: the reference sets no sign (add [roles.privacy] etc.)")
    return reference


def reference_from_group(
    estimates: pd.DataFrame, paths, group: str, *, level: str = BASELINE
) -> Reference:
    """A reference whose signs are the signs of `group`'s own path estimates at `level`.

    Used when the data hold a human sample: models are then scored against those humans, and
    the group itself is left out of the scoring.
    """
    rows = estimates[(estimates["op"] == "~") & (estimates["level"] == level)]
    groups = sorted(rows["group"].astype(str).unique())
    if group not in groups:
        raise VaarError(
            f"human group {group!r} has no path estimates at level {level!r} "
            f"(groups with estimates: {', '.join(groups) or 'none'})"
        )
    entries = []
    for path in paths:
        lhs, rhs, _ = _as_path(path)
        hit = rows[(rows["group"] == group) & (rows["lhs"] == lhs) & (rows["rhs"] == rhs)]
        est = float(hit["est"].iloc[0]) if len(hit) else math.nan
        if not math.isfinite(est) or est == 0:
            raise VaarError(
                f"human group {group!r}: path {lhs} ~ {rhs} has no usable estimate "
                f"({est}); its sign cannot serve as the reference"
            )
        pvalue = float(hit["pvalue"].iloc[0]) if "pvalue" in hit else math.nan
        entries.append(
            PathEntry(
                lhs=lhs,
                rhs=rhs,
                sign=1 if est > 0 else -1,
                rationale=f"sign of group {group!r}'s estimate {est:.4g} (p = {pvalue:.3g})",
                citations=[f"estimated from data group {group!r} at level {level!r}"],
            )
        )
    return Reference(
        title=f"signs estimated from human group {group!r}",
        paths=entries,
        source=f"group:{group}",
        human_group=group,
    )
