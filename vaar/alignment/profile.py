"""Questionnaire profiles per model: what each LLM says (scores, reliability), how it answers
(response styles, position effects), and whether that profile is stable and model-specific.

The paper reports "stable but model-specific Privacy-PSA-AoDS profiles"; these tables are how
vaar checks that claim on a study's own data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vaar.alignment.reliability import cronbach_alpha, mcdonald_omega
from vaar.errors import VaarError
from vaar.sem.result import json_records

PROFILE_COLUMNS = [
    "model", "instrument", "factor", "n_items", "n_sessions", "mean", "sd", "alpha", "omega",
    "acquiescence", "extreme", "straightlining", "invalid_share", "refused_share",
    "error_share", "position_r", "split_half_diff", "note",
]  # fmt: skip
STABILITY_COLUMNS = ["model", "profile_r", "self_match", "n_splits", "n_factors"]


@dataclass
class Profiles:
    """`table`: one row per model x instrument (factor "*") and model x factor.
    `stability`: per model, how well random halves of its sessions reproduce its profile."""

    table: pd.DataFrame
    stability: pd.DataFrame
    splits: int | None  # None when read from an estimates.json (which does not store them)
    seed: int | None

    def to_dict(self) -> dict:
        return {
            "splits": self.splits,
            "seed": self.seed,
            "table": json_records(self.table),
            "stability": json_records(self.stability),
        }


@dataclass(frozen=True)
class _Unit:
    """A scored unit: a whole instrument (factor "*") or one of its factors."""

    instrument: object
    factor: str
    items: list[str]
    reverse: np.ndarray  # bool per item

    def scored(self, raw: np.ndarray) -> np.ndarray:
        lo, hi = self.instrument.scale_min, self.instrument.scale_max
        return np.where(self.reverse, lo + hi - raw, raw)

    def pomp(self, score: float) -> float:
        """Percent of maximum possible (0..1), so 5- and 7-point scales are comparable."""
        lo, hi = self.instrument.scale_min, self.instrument.scale_max
        return (score - lo) / (hi - lo)


def _units(wide: pd.DataFrame, instruments) -> list[_Unit]:
    units = []
    for inst in instruments:
        present = [i for i in inst.items if i.id in wide.columns]
        if not present:
            continue
        groups = [("*", present)]
        if len(inst.factors) > 1:
            groups += [(f, [i for i in present if i.factor == f]) for f in inst.factors]
        for factor, items in groups:
            if items:
                units.append(
                    _Unit(inst, factor, [i.id for i in items], np.array([i.reverse for i in items]))
                )
    if not units:
        raise VaarError("the wide table has none of the instruments' item columns")
    return units


def profiles(
    long: pd.DataFrame | None,
    wide: pd.DataFrame,
    instruments,
    *,
    splits: int = 20,
    seed: int = 0,
) -> Profiles:
    """Profiles of every model in `wide` (raw answers; reverse keys are applied here).

    `long` (optional) adds what only it has: invalid/refused/error shares and item-position
    effects. Split-half stability uses `splits` random halves of each model's sessions, seeded.
    """
    missing = [c for c in ("model", "session") if c not in wide.columns]
    if missing:
        raise VaarError(f"wide table lacks column(s) {missing}")
    units = _units(wide, instruments)
    rng = np.random.default_rng(seed)
    halves = {
        model: [rng.permutation(len(rows)) for _ in range(splits)]
        for model, rows in wide.groupby("model", sort=False)
    }
    rows = []
    for model, data in wide.groupby("model", sort=False):
        mine = long[long["model"] == model] if long is not None else None
        for unit in units:
            rows.append(_unit_row(model, data, mine, unit, halves[model]))
    table = pd.DataFrame(rows, columns=PROFILE_COLUMNS)
    return Profiles(table, _stability(wide, units, halves), splits, seed)


def _unit_row(model, data: pd.DataFrame, long, unit: _Unit, halves) -> dict:
    raw = data[unit.items].to_numpy(float)
    scored = unit.scored(raw)
    answered = ~np.isnan(raw).all(axis=1)
    session_scores = _row_means(scored[answered])
    lo, hi = unit.instrument.scale_min, unit.instrument.scale_max
    valid = raw[~np.isnan(raw)]
    omega, note = mcdonald_omega(scored)
    row = {
        "model": model,
        "instrument": unit.instrument.id,
        "factor": unit.factor,
        "n_items": len(unit.items),
        "n_sessions": int(answered.sum()),
        "mean": _mean(session_scores),
        "sd": float(np.std(session_scores, ddof=1)) if len(session_scores) > 1 else math.nan,
        "alpha": cronbach_alpha(scored),
        "omega": omega,
        "acquiescence": _mean((valid - lo) / (hi - lo)),
        "extreme": _mean((valid == lo) | (valid == hi)),
        "straightlining": _straightlining(raw) if len(unit.items) > 1 else math.nan,
        "split_half_diff": _split_half_diff(scored, halves),
        "note": note,
    }
    row.update(_long_stats(long, unit))
    return row


def _mean(x) -> float:
    x = np.asarray(x, float)
    return float(x.mean()) if x.size else math.nan


def _straightlining(raw: np.ndarray) -> float:
    """Share of sessions (with >= 2 answers) giving one and the same value to every item."""
    flags = []
    for answers in raw:
        answers = answers[~np.isnan(answers)]
        if answers.size >= 2:
            flags.append(bool((answers == answers[0]).all()))
    return _mean(flags)


def _row_means(values: np.ndarray) -> np.ndarray:
    """Mean of each row over its answered cells; NaN for a row with none (no warning)."""
    answered = (~np.isnan(values)).sum(axis=1)
    sums = np.nansum(values, axis=1)
    return np.where(answered > 0, sums / np.maximum(answered, 1), np.nan)


def _nan_mean(values: np.ndarray) -> float:
    """Mean over the non-missing values; NaN when there are none (no warning)."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else math.nan


def _split_half_diff(scored: np.ndarray, halves) -> float:
    """Mean |score(half A) - score(half B)| over the random splits, in scale points."""
    diffs = []
    session_scores = _row_means(scored)
    for order in halves:
        half = len(order) // 2
        a, b = session_scores[order[:half]], session_scores[order[half:]]
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
        if a.size and b.size:
            diffs.append(abs(a.mean() - b.mean()))
    return _mean(diffs)


def _long_stats(long: pd.DataFrame | None, unit: _Unit) -> dict:
    """Answer-status shares and the item-position correlation, from the long table."""
    empty = {
        "invalid_share": math.nan, "refused_share": math.nan, "error_share": math.nan,
        "position_r": math.nan,
    }  # fmt: skip
    if long is None:
        return empty
    rows = long[long["item"].isin(unit.items)]
    if rows.empty:
        return empty
    status = rows["status"]
    out = {f"{s}_share": float((status == s).mean()) for s in ("invalid", "refused", "error")}
    ok = rows[status == "ok"]
    reverse = ok["item"].map(dict(zip(unit.items, unit.reverse, strict=True))).to_numpy(bool)
    lo, hi = unit.instrument.scale_min, unit.instrument.scale_max
    value = ok["value"].to_numpy(float)
    scored = pd.Series(np.where(reverse, lo + hi - value, value), index=ok.index)
    # centre within item, so item content does not pass for a position effect
    centred = scored - scored.groupby(ok["item"]).transform("mean")
    position = ok["position"].astype(float)
    usable = len(ok) > 2 and centred.std() > 0 and position.std() > 0
    out["position_r"] = float(np.corrcoef(centred, position)[0, 1]) if usable else math.nan
    return out


def _stability(wide: pd.DataFrame, units: list[_Unit], halves) -> pd.DataFrame:
    """Per model: correlation of its factor-level profile (POMP means) between random halves,
    and the share of splits in which half A is closer to its own half B than to any other
    model's half B (1 = the profile identifies the model)."""
    factor_units = [u for u in units if u.factor != "*" or len(u.instrument.factors) == 1]
    models = list(halves)
    per_split = []
    for s in range(len(next(iter(halves.values()), []))):
        a, b = {}, {}
        for model, data in wide.groupby("model", sort=False):
            order = halves[model][s]
            half = len(order) // 2
            a[model] = _profile(data.iloc[order[:half]], factor_units)
            b[model] = _profile(data.iloc[order[half:]], factor_units)
        per_split.append((a, b))
    rows = []
    for model in models:
        rs, matches = [], []
        for a, b in per_split:
            pa, pb = a[model], b[model]
            ok = ~(np.isnan(pa) | np.isnan(pb))
            if ok.sum() >= 3 and pa[ok].std() > 0 and pb[ok].std() > 0:
                rs.append(np.corrcoef(pa[ok], pb[ok])[0, 1])
            distances = {m: _nan_mean((pa - b[m]) ** 2) for m in models}
            if len(models) > 1 and not any(np.isnan(list(distances.values()))):
                matches.append(min(distances, key=distances.get) == model)
        rows.append(
            {
                "model": model, "profile_r": _mean(rs), "self_match": _mean(matches),
                "n_splits": len(per_split), "n_factors": len(factor_units),
            }
        )  # fmt: skip
    return pd.DataFrame(rows, columns=STABILITY_COLUMNS)


def _profile(data: pd.DataFrame, units: list[_Unit]) -> np.ndarray:
    out = []
    for unit in units:
        scored = unit.scored(data[unit.items].to_numpy(float))
        with np.errstate(all="ignore"):
            out.append(unit.pomp(np.nanmean(scored)) if (~np.isnan(scored)).any() else math.nan)
    return np.array(out)
