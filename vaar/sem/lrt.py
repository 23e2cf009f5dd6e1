"""Likelihood-ratio tests of single structural paths, one group at a time: the model of a
fitted level refitted with the path `lhs ~ rhs` fixed at 0 in one group only (a per-group
modifier vector, `c(NA, 0, NA)*rhs`, generated here and checked by the allow-list like every
model), compared with the unrestricted refit by lavTestLRT (r/lrt.R).

The scaled difference for robust estimators is lavaan's own, by the method LRT_METHODS names
(docs/vaar.md, "Sign evidence"). vaar.alignment.lrt turns the tests into signed z's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from vaar import invariance
from vaar.errors import VaarError
from vaar.sem import bridge
from vaar.sem.grammar import check_model, render
from vaar.sem.syntax import SOURCE, split_statement, term_variable
from vaar.sem.tokens import split_statements

# lavTestLRT's method per estimator. ML: "default", there the plain difference of the
# chi-squares (lavaan 0.6-14 knows no method named for it). MLR: Satorra &
# Bentler (2010), which cannot go negative (lavaan's default for MLR, satorra.bentler.2001, can);
# the refits use the expected information (r/lrt.R says why). WLSMV: Satorra (2000),
# scaled and shifted, lavaan's default for it and the one it offers for DWLS-based tests.
LRT_METHODS = {"ML": "default", "MLR": "satorra.bentler.2010", "WLSMV": "satorra.2000"}


@dataclass(frozen=True)
class LevelModel:
    """How one level of a vaar.sem result was fitted: all a refit of it needs (picklable)."""

    syntax: str
    group: str
    estimator: str
    ordered: tuple[str, ...]
    missing: str
    level: str
    equal: tuple[str, ...]  # group.equal
    partial: tuple[str, ...]  # group.partial

    @property
    def method(self) -> str:
        return LRT_METHODS[self.estimator]


@dataclass(frozen=True)
class PathTest:
    """The LRT of `lhs ~ rhs` fixed at 0 in `group` against the unrestricted refit; `error`
    says in words why there is no test (then the numbers are NaN)."""

    group: str
    lhs: str
    rhs: str
    chisq_diff: float = math.nan
    df_diff: float = math.nan
    pvalue: float = math.nan
    method: str = ""
    error: str | None = None


def level_model(sem_result, level: str) -> LevelModel:
    """The LevelModel of `level` (a fitted level's name, e.g. "scalar_partial") of a result
    of vaar.sem.fit_ladder: its syntax and options as fitted, the level's cumulative
    group.equal and, for a partial level, the parameters freed up to it."""
    args = (getattr(sem_result, "call", None) or {}).get("args", {})
    if not sem_result.syntax or not args:
        raise VaarError("the SEM result does not say how it was fitted (use vaar.sem.fit_ladder)")
    ordered = tuple(args.get("ordered") or ())
    table = invariance.r_tables([invariance.level_of(level).name], invariance.DEFAULT_RULE,
                                ordinal=bool(ordered), equal_paths=False)["ladder"]  # fmt: skip
    equal = tuple(name for name in table["equal"].iloc[0].split(",") if name)
    return LevelModel(
        syntax=sem_result.syntax, group=args["group"],
        estimator=sem_result.estimator or args["estimator"], ordered=ordered,
        missing=args.get("missing", invariance.MISSING[0]), level=level, equal=equal,
        partial=tuple(freed_at(sem_result, level)),
    )  # fmt: skip


def freed_at(sem_result, level: str) -> list[str]:
    """The group.partial parameters a fitted level was fitted with: none for a level without
    the partial suffix; for a partial level those fit_ladder was given (`freed`) and those
    each successful partial search freed at this level or below (the ladder keeps them)."""
    if not level.endswith(invariance.PARTIAL):
        return []
    given = list((getattr(sem_result, "call", None) or {}).get("args", {}).get("freed") or [])
    steps = getattr(sem_result, "partial", None)
    if steps is None or not len(steps):
        return given
    top = invariance.LEVEL_NAMES.index(invariance.level_of(level).name)
    found = []
    for name, search in steps.groupby("level", sort=False):
        if invariance.LEVEL_NAMES.index(name) <= top and search["holds"].astype(bool).any():
            found.extend(search["freed"].astype(str))
    return list(dict.fromkeys([*given, *found]))


def restricted_syntax(syntax: str, lhs: str, rhs: str, position: int, n_groups: int) -> str:
    """`syntax` with the regression `lhs ~ rhs` fixed at 0 in group `position` (0-based, in
    lavaan's group order) and free in the others; VaarError when the model has no such
    regression or the term already carries a modifier."""
    vector = ", ".join("0" if g == position else "NA" for g in range(n_groups))
    out, hits = [], 0
    for tokens in split_statements(syntax, SOURCE):
        parts = split_statement(tokens)
        if parts is None or parts[0] != lhs or parts[1] != "~":
            out.append(render(tokens))
            continue
        terms = []
        for term in parts[2]:
            text = render(term)
            if term_variable(term) == rhs:
                if len(term) != 1:
                    raise VaarError(f"the path {lhs} ~ {rhs} carries a modifier ({text})")
                text, hits = f"c({vector})*{rhs}", hits + 1
            terms.append(text)
        out.append(f"{lhs} ~ " + " + ".join(terms))
    if hits != 1:
        raise VaarError(f"the model has no regression {lhs} ~ {rhs} to test")
    return check_model("\n".join(out))


def run_path_tests(data: pd.DataFrame, model: LevelModel, paths: list[tuple[str, str, str]]):
    """One PathTest per (group, lhs, rhs) in `paths`: one R call that fits the unrestricted
    model once and each restricted one (runs wherever it is called: an R worker's job)."""
    groups = list(dict.fromkeys(data[model.group].astype(str)))  # lavaan's group order
    models = [model.syntax]
    for group, lhs, rhs in paths:
        models.append(restricted_syntax(model.syntax, lhs, rhs, groups.index(group), len(groups)))
    raw = bridge.call(
        "vaar_lrt_refits", data, models, group=model.group, estimator=model.estimator,
        ordered=list(model.ordered), missing=model.missing, level=model.level,
        equal=list(model.equal), partial=list(model.partial), method=model.method,
    )  # fmt: skip
    fitted = raw.get("groups") or []
    fitted = [fitted] if isinstance(fitted, str) else list(fitted)
    if fitted and fitted != groups:
        raise VaarError(f"lavaan ordered the groups {fitted}, not {groups} as vaar assumed")
    rows = raw["tests"].to_dict("records")
    return [
        PathTest(
            group,
            lhs,
            rhs,
            chisq_diff=float(row["chisq_diff"]),
            df_diff=float(row["df_diff"]),
            pvalue=float(row["lrt_pvalue"]),
            method=row["lrt_method"] or "",
            error=row["error"] or None,
        )  # fmt: skip
        for (group, lhs, rhs), row in zip(paths, rows, strict=True)
    ]
