"""Honest identification: a level whose model did not converge or is not identified never
"holds", and the decision says, in plain words, which levels could not be judged and why.

R's ladder judges a level by convergence and fit-index changes; lavaan fits a non-identified
model (one factor with two indicators) with a warning only, so its levels would "hold" and the
likelihood-ratio column would show lavaan's own failure ("subscript out of bounds"). This module
reads the fits, flags and comparisons vaar_fit_ladder returns and corrects the decision."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

NOT_IDENTIFIED = (
    "is not identified: lavaan cannot pin down all its parameters (its parameter covariance "
    "matrix is singular or could not be computed; e.g. a factor with only two indicators), so "
    "its fit and estimates cannot be interpreted"
)
NOT_CONVERGED = "did not converge or could not be fitted: it has no fit to judge"
UNDECIDED = {  # R's reasons for a comparison it could not decide, in plain words
    "a model did not converge": "one of the two models did not converge",
    "the index the rule needs is not available": (
        "lavaan gave no value for a fit index the rule compares (CFI, RMSEA or SRMR)"
    ),
}
LRT_FAILED = "lavaan could not compute the likelihood-ratio test for this pair of models"


def unusable_levels(fits: pd.DataFrame, flags: pd.DataFrame) -> dict[str, str]:
    """level -> why its model cannot be judged (not converged, not identified)."""
    return {level: f"the {level} model {why}" for level, why in _problems(fits, flags).items()}


def unconverged_levels(fits: pd.DataFrame) -> dict[str, str]:
    """level -> why, for each level whose model did not converge (it has no estimates to use)."""
    return {
        str(row["level"]): f"the {row['level']} model {NOT_CONVERGED}"
        for row in fits.to_dict("records")
        if row.get("converged") is not True
    }


def _problems(fits: pd.DataFrame, flags: pd.DataFrame) -> dict[str, str]:
    out: dict[str, str] = {level: NOT_CONVERGED for level in unconverged_levels(fits)}
    if len(flags) and "flag" in flags:
        for level in flags.loc[flags["flag"] == "not_identified", "level"].astype(str):
            out.setdefault(level, NOT_IDENTIFIED)
    return out


def _base(level: str, order: list[str]) -> int:
    """A level's place on the ladder; a partial level sits where its full level does."""
    name = level.removesuffix("_partial")
    return order.index(name) if name in order else len(order)


def judge(decision: dict, fits: pd.DataFrame, comparisons: pd.DataFrame, flags: pd.DataFrame):
    """The decision and comparisons with unusable levels never holding: `highest` is the last
    level below the first unusable one (None when configural is), `not_judged` lists each level
    that could not be judged with its reason; the comparisons say why in `reason` and
    `lrt_error`, in words rather than R's messages."""
    decision = dict(decision)
    order = list(decision.get("levels_tested") or [])
    bad = unusable_levels(fits, flags)
    problems = _problems(fits, flags)
    highest = decision.get("highest")
    if highest is not None:
        held = [lv for lv in map(str, fits["level"]) if _base(lv, order) <= _base(highest, order)]
        first_bad = next((lv for lv in held if lv in bad), None)
        if first_bad is not None:
            below = [lv for lv in held if _base(lv, order) < _base(first_bad, order)]
            highest = below[-1] if below else None
    decision["highest"] = decision["level"] = highest
    not_judged = {lv: why for lv, why in bad.items()}
    comparisons = comparisons.copy()
    if len(comparisons):
        for i, row in comparisons.iterrows():
            low, high = str(row["from"]), str(row["to"])
            spoiled = [bad[high]] if high in bad else []
            if low in bad:
                spoiled.append(f"it is compared with the {low} model, which {problems[low]}")
            if spoiled:
                comparisons.at[i, "holds"] = False
                comparisons.at[i, "reason"] = "not judged: " + "; ".join(spoiled)
                comparisons.at[i, "lrt_error"] = "not computed: " + "; ".join(spoiled)
                not_judged.setdefault(str(row["to"]), "; ".join(spoiled))
                continue
            if row.get("reason") in UNDECIDED:
                comparisons.at[i, "reason"] = "not judged: " + UNDECIDED[row["reason"]]
                not_judged.setdefault(str(row["to"]), UNDECIDED[row["reason"]])
            if isinstance(row.get("lrt_error"), str) and row["lrt_error"]:
                comparisons.at[i, "lrt_error"] = LRT_FAILED
    if bad:  # above a level that cannot be judged the ladder has no footing
        first = min(bad, key=lambda lv: _base(lv, order))
        above = f"a level below it ({first}) could not be judged"
        for level in map(str, fits["level"]):
            if _base(level, order) > _base(first, order) and level not in not_judged:
                not_judged[level] = above
                rows = comparisons["to"].astype(str) == level if len(comparisons) else []
                if len(comparisons) and rows.any():
                    comparisons.loc[rows, "holds"] = False
                    comparisons.loc[rows, "reason"] = "not judged: " + above
    decision["not_judged"] = [
        {"level": lv, "reason": why}
        for lv, why in sorted(not_judged.items(), key=lambda kv: _base(kv[0], order))
    ]
    return decision, comparisons
