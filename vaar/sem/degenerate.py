"""Checks each group *before* fitting for what makes lavaan stop with a hard error on LLM data
(zero-variance items, empty ordinal categories, fewer sessions than items, all missing, one
answer to every item). A group whose answers carry no information for the model is excluded;
for degenerate items the study's strategy applies: drop them in every group, exclude the
group, or fail. Never jitter: the data lavaan sees are the answers, minus what is reported here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vaar.errors import VaarError
from vaar.invariance import DEGENERATE as STRATEGIES

if TYPE_CHECKING:  # no pandas at import: the command line's options name STRATEGIES
    import pandas as pd


@dataclass
class Problem:
    group: str
    item: str | None  # None: the whole group
    reason: str

    def text(self) -> str:
        where = f"item {self.item} in group {self.group}" if self.item else f"group {self.group}"
        return f"{where}: {self.reason}"


@dataclass
class Cleaned:
    data: pd.DataFrame
    items: list[str]
    dropped_items: list[dict] = field(default_factory=list)  # {item, reason}
    excluded_groups: list[dict] = field(default_factory=list)  # {group, reason}


def unanswered(data: pd.DataFrame, items: list[str]) -> list[str]:
    """Items no row answers (a column of empty cells): degenerate in every group."""
    return [item for item in items if item in data.columns and data[item].isna().all()]


def check_unanswered(data: pd.DataFrame, items: list[str], strategy: str) -> str | None:
    """Before any R: items nobody answered. VaarError unless the strategy drops them (every
    group would be excluded); else the note to show at once (the report also lists them)."""
    empty = unanswered(data, items)
    if not empty:
        return None
    note = f"item(s) {', '.join(empty)} have no answer in any session (every cell empty)"
    if strategy != "drop_items":
        raise VaarError(f"cannot fit the model (degenerate={strategy!r}): {note}")
    return f"{note}; dropped before fitting (degenerate='drop_items')"


NO_VARIATION = "no value–action variation to estimate"


def constant_answers(rows: pd.DataFrame, items: list[str]) -> str | None:
    """Why a group whose every item has one answer (in all its sessions) carries no information
    for the model, in plain words; None when any item varies."""
    answers = rows[items]
    if any(answers[item].dropna().nunique() > 1 for item in items):
        return None
    values = answers.stack().dropna().unique()
    if len(values) == 1:
        some = " it answered" if answers.isna().all().any() else ""
        return f"answered {values[0]:g} to every item{some}: {NO_VARIATION}"
    return f"gave the same answer to each item in every session: {NO_VARIATION}"


def usable_sessions(rows: pd.DataFrame, items: list[str], missing: str) -> int:
    """Sessions the fit can use: any answer (FIML, pairwise), every answer (listwise)."""
    answered = rows[items].notna()
    return int((answered.all(axis=1) if missing == "listwise" else answered.any(axis=1)).sum())


def group_problems(
    rows: pd.DataFrame,
    name: str,
    items: list[str],
    missing: str = "fiml",
    given: pd.DataFrame | None = None,
) -> list[Problem]:
    """Problems that concern a whole group: its answers carry no information for the model.
    `given`: the group's answers as the respondent gave them, when `rows` holds them scored
    (reverse keys applied), to say "answered 5 to every item" as it was."""
    if rows[items].isna().all().all():
        return [Problem(name, None, "every answer is missing")]
    usable = usable_sessions(rows, items, missing)
    constant = constant_answers(rows, items) if usable > 1 else None  # one session: see below
    if constant and given is not None:
        constant = constant_answers(given, items) or constant
    if constant:
        return [Problem(name, None, constant)]
    if usable <= len(items):  # n <= p: the sample covariance matrix is singular
        what = "complete sessions" if missing == "listwise" else "sessions"
        return [
            Problem(
                name,
                None,
                f"{usable} {what} for {len(items)} items (more sessions than items are needed)",
            )
        ]
    return []


def singular_groups(data: pd.DataFrame, group: str, items: list[str], missing: str):
    """Groups whose sessions leave the sample covariance matrix singular (answers that repeat
    or move in lockstep, as a small LLM's do): lavaan would stop with "not positive-definite".
    Judged on the complete sessions when those are what the fit uses (listwise, or nothing
    missing in the group); with FIML and holes, lavaan's own estimate decides."""
    import numpy as np

    problems = []
    for name, rows in data.groupby(group, sort=False):
        values = rows[items]
        if missing != "listwise" and values.isna().any().any():
            continue
        complete = values.dropna().to_numpy(float)
        rank = int(np.linalg.matrix_rank(complete - complete.mean(axis=0)))
        if rank < len(items):
            patterns = len(np.unique(complete, axis=0))
            problems.append(
                Problem(
                    str(name),
                    None,
                    f"its {len(complete)} sessions give {patterns} distinct answer patterns, "
                    f"spanning {rank} of {len(items)} dimensions: the sample covariance matrix "
                    "is singular (answers repeat or move together)",
                )
            )
    return problems


def item_problems(data: pd.DataFrame, group: str, items: list[str], ordered: bool):
    problems = []
    categories = {item: set(data[item].dropna().unique()) for item in items} if ordered else {}
    for name, rows in data.groupby(group, sort=False):
        for item in items:
            values = rows[item].dropna()
            if values.empty:
                problems.append(Problem(str(name), item, "every answer is missing"))
            elif values.nunique() == 1:
                problems.append(
                    Problem(str(name), item, f"zero variance (every answer is {values.iloc[0]:g})")
                )
            elif ordered:
                empty = sorted(categories[item] - set(values.unique()))
                if empty:
                    shown = ", ".join(f"{v:g}" for v in empty)
                    problems.append(Problem(str(name), item, f"empty ordinal categories {shown}"))
    return problems


def clean(
    data: pd.DataFrame,
    group: str,
    items: list[str],
    *,
    ordered: bool,
    strategy: str,
    missing: str = "fiml",
    answers: pd.DataFrame | None = None,
):
    """The data and items to fit, and what was dropped or excluded (with reasons). A group with
    no information for the model (every answer missing, one answer per item, too few usable
    sessions, a singular covariance matrix once the items are settled) is excluded under every
    strategy but "fail"; `strategy` decides what happens to items that are degenerate in some
    group. `answers` (optional): the answers as given when `data` holds them scored, for the
    wording of reasons only."""
    given = dict(tuple(answers.groupby(answers[group].astype(str)))) if answers is not None else {}
    if strategy not in STRATEGIES:
        raise VaarError(f"degenerate must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    items = list(items)
    excluded: list[dict] = []
    dropped: list[dict] = []
    while True:
        whole = [
            p
            for name, rows in data.groupby(group, sort=False)
            for p in group_problems(rows, str(name), items, missing, given.get(str(name)))
        ]
        per_item = item_problems(data, group, items, ordered)
        if not whole and not per_item:
            whole = [] if ordered else singular_groups(data, group, items, missing)
            if not whole or len({p.group for p in whole}) == data[group].nunique():
                break  # none, or singular everywhere: the items, not a group (lavaan says so)
        if strategy == "fail":
            reasons = "; ".join(p.text() for p in whole + per_item)
            raise VaarError(f"cannot fit the model (degenerate='fail'): {reasons}")
        bad_groups = {p.group: p.reason for p in whole}
        if strategy == "exclude_group":
            for p in per_item:
                bad_groups.setdefault(p.group, f"item {p.item}: {p.reason}")
        if bad_groups:
            excluded += [{"group": g, "reason": r} for g, r in bad_groups.items()]
            data = data[~data[group].astype(str).isin(bad_groups)]
            continue  # item checks change once groups are gone
        reasons: dict[str, list[str]] = {}
        for p in per_item:
            reasons.setdefault(p.item, []).append(f"group {p.group}: {p.reason}")
        dropped += [{"item": item, "reason": "; ".join(why)} for item, why in reasons.items()]
        items = [i for i in items if i not in reasons]
        if not items:
            break
    if data.empty:
        raise VaarError(
            "no group is left to fit (no group's answers carry information for the model): "
            + "; ".join(f"group {e['group']}: {e['reason']}" for e in excluded)
        )
    return Cleaned(data.reset_index(drop=True), items, dropped, excluded)
