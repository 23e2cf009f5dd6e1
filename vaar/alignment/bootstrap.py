"""Bootstrap uncertainty for VAAR: resample sessions within each model, refit with vaar.sem,
rescore. CIs per model (percentile by default), and per pair of models a CI of their VAAR
difference.

Every draw is an independent job on an Executor (executors.refit_executor). A draw whose fit
fails, or in which a model is not estimable, is counted as failed for that model and left out
of its CI; the counts are part of the result, never hidden.
"""

from __future__ import annotations

import itertools
import math
import time
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vaar.alignment.reference import Reference, _as_path
from vaar.alignment.scores import path_evidence, scores_from_evidence, sign_metrics
from vaar.config import INTERVAL_METHODS
from vaar.errors import VaarError
from vaar.invariance import BASELINE, INFORMATION, level_of
from vaar.sem.identification import unconverged_levels
from vaar.sem.result import json_records

METRICS = ("vaar_soft", "vaar_hard", "vaar_logloss")
PATH_COLUMNS = ("model", "lhs", "rhs", "expected_sign", "z", "z_se")


@dataclass(frozen=True)
class RefitSpec:
    """What each bootstrap draw refits and how it scores: everything plain and picklable."""

    syntax: str
    paths: tuple
    reference: Reference
    level: str = BASELINE
    estimator: str = "MLR"
    ordered: bool | tuple = False  # or the ordinal variables' names
    degenerate: str = "drop_items"
    standardized: bool = False
    alpha: float = 0.05
    group: str = "model"
    missing: str = "fiml"  # as the original fit: "fiml" or "listwise"
    information: str = INFORMATION[0]  # as the original fit (vaar.invariance.FIML_INFORMATION)
    freed: tuple = ()  # a partial level's freed parameters (vaar.sem.lrt.freed_at)
    evidence: str = "wald"  # or "lrt": each draw's paths tested by LR refits (vaar.alignment.lrt)


def resample(data: pd.DataFrame, rng: np.random.Generator, group: str = "model") -> pd.DataFrame:
    """Sessions drawn with replacement within each model (each keeps its own sample size);
    duplicated sessions get distinct ids."""
    parts = []
    for _, rows in data.groupby(group, sort=False):
        parts.append(rows.iloc[rng.integers(0, len(rows), len(rows))])
    out = pd.concat(parts, ignore_index=True)
    if "session" in out.columns:
        out["session"] = out["session"].astype(str) + "#" + out.index.astype(str)
    return out


def refit_draw(spec: RefitSpec, data: pd.DataFrame, seed: int, draw: int | None) -> dict:
    """One bootstrap draw (runs in a worker process): resample, fit, score every model.
    `draw=None` fits the data as they are (the observed paths, when the caller has none)."""
    models = list(dict.fromkeys(data[spec.group].astype(str)))
    start = time.perf_counter()
    sample = (
        data if draw is None else resample(data, np.random.default_rng([seed, draw]), spec.group)
    )
    try:
        evidence = _fit_evidence(spec, sample, models)
        if spec.level == BASELINE and len(models) > 1:
            evidence = _refit_alone(spec, sample, evidence)
        scores = scores_from_evidence(evidence, spec.level)
    except Exception as exc:  # a failed refit is data for the result, not a crash
        return {"draw": draw, "error": f"{type(exc).__name__}: {exc}", "scores": [], "paths": []}
    usable = evidence.dropna(subset=["z"])
    return {
        "draw": draw,
        "error": None,
        "seconds": time.perf_counter() - start,
        "scores": scores.to_dict("records"),
        "paths": usable[list(PATH_COLUMNS)].to_dict("records"),
    }


def _fit_evidence(spec: RefitSpec, sample: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    from vaar.alignment.lrt import LRT, lrt_evidence
    from vaar.sem import fit_ladder

    fit = fit_ladder(
        sample,
        spec.syntax,
        spec.group,
        estimator=spec.estimator,
        ordered=list(spec.ordered) if isinstance(spec.ordered, tuple) else spec.ordered,
        levels=[level_of(spec.level).name],  # scalar_partial: scalar, with the freed parameters
        freed=list(spec.freed),
        degenerate=spec.degenerate,
        equal_paths=False,  # the equal-paths test is not needed to score VAAR
        missing=spec.missing,
        information=spec.information,
    )
    evidence = fit_evidence(
        fit, spec.paths, spec.reference, level=spec.level, standardized=spec.standardized,
        alpha=spec.alpha, models=models,
    )  # fmt: skip
    if spec.evidence == LRT and len(fit.estimates):  # the draw's own refits, here in its worker
        evidence = lrt_evidence(fit, evidence, level=spec.level, alpha=spec.alpha)[0]
    return evidence


def _refit_alone(spec: RefitSpec, sample: pd.DataFrame, evidence: pd.DataFrame) -> pd.DataFrame:
    """Refit each model left without usable paths on its own sessions.

    At the configural level no parameter is shared between groups, so a model's estimates and
    standard errors are the same fitted alone as in the joint fit; but lavaan computes the
    standard errors of all groups from one information matrix, and one group that makes it
    singular (a Heywood case in a resample) leaves every group without them. Refitting alone
    keeps that one group's trouble from costing every other model its draw."""
    excluded = evidence["note"].str.contains("excluded by vaar.sem")
    failed = evidence.loc[evidence["evidence"].isna() & ~excluded, "model"].unique()
    parts = {model: rows for model, rows in evidence.groupby("model", sort=False)}
    for model in failed:
        alone = sample[sample[spec.group].astype(str) == model]
        try:
            refit = _fit_evidence(spec, alone, [model])
        except Exception as exc:  # the model stays failed, with the reason
            refit = parts[model].assign(note=f"refitted alone: {type(exc).__name__}: {exc}")
        if refit["evidence"].isna().any():  # failed alone too: keep both reasons
            refit = refit.assign(note=parts[model]["note"].to_numpy() + "; refitted alone: "
                                 + refit["note"].to_numpy())  # fmt: skip
        parts[model] = refit
    return pd.concat(parts.values(), ignore_index=True)


def fit_evidence(
    sem_result, paths, reference: Reference, *, level: str, standardized: bool = False,
    alpha: float = 0.05, models: list[str] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """path_evidence for a vaar.sem result, every model it could not score carrying the reason:
    vaar.sem's, for a group it left out, or lavaan's, when nothing could be fitted."""
    evidence = path_evidence(
        sem_result.estimates, paths, reference, level=level, standardized=standardized,
        alpha=alpha, models=models,
    )  # fmt: skip
    if not len(sem_result.estimates):
        evidence["note"] = f"the {level} model could not be fitted: {fit_failure(sem_result)}"
    elif why := unconverged_levels(sem_result.fits).get(level):
        # a level that did not converge gives no evidence: its estimates (and any SEs) are not
        # a solution. (lavaan's "may not be identified" warning is not enough to refuse: under
        # MLR it also fires when a group has fewer sessions than parameters.)
        evidence[["z", "z_se", "pvalue", "evidence"]] = math.nan
        evidence["supports"], evidence["note"] = False, why
    for group, why in excluded_groups(sem_result).items():
        evidence.loc[evidence["model"] == group, "note"] = f"excluded by vaar.sem: {why}"
    return evidence


def fit_failure(sem_result) -> str:
    """lavaan's own reason why a fit failed: its errors at the configural level, else any."""
    diagnostics = sem_result.diagnostics
    messages = [str(m) for m in diagnostics.get("errors") or diagnostics.get("warnings") or []]
    first = [m for m in messages if m.startswith(f"{BASELINE}:")] or messages
    return "; ".join(first) or "lavaan gave no estimates and no message"


def excluded_groups(sem_result) -> dict[str, str]:
    """Groups vaar.sem left out before fitting, with its reasons (diagnostics: a list of
    {group, reason})."""
    excluded = sem_result.diagnostics.get("excluded_groups") or []
    return {str(e["group"]): str(e["reason"]) for e in excluded}


INTERVAL_NOTES = {
    "basic-est": "basic bootstrap of each path estimate (b* reflected around the observed b: "
    "2b - b*) over the observed SE, mapped through the VAAR formulas; sessions resampled "
    "within model; model refitted at the scored level for every draw",
    "basic-z": "basic bootstrap on each path's Wald z (z* reflected around the observed z: "
    "2z - z*), mapped through the VAAR formulas; sessions resampled within model; model "
    "refitted at the scored level for every draw",
    "percentile": "percentile bootstrap of the refits' VAAR; sessions resampled within model; "
    "model refitted at the scored level for every draw",
}


@dataclass
class BootstrapResult:
    """The refits (per-draw scores and path z), the CIs and pairwise differences by `method`."""

    draws: pd.DataFrame  # draw, model, vaar_soft, vaar_hard, vaar_logloss, note (each refit's)
    paths: pd.DataFrame  # draw, model, lhs, rhs, expected_sign, z (each refit's usable paths)
    observed_paths: pd.DataFrame  # model, lhs, rhs, expected_sign, z of the data as given
    intervals: pd.DataFrame
    pairwise: pd.DataFrame
    requested: int
    failed_fits: list[dict] = field(default_factory=list)
    confidence: float = 0.95
    seed: int = 0
    level: str = BASELINE
    method: str = INTERVAL_METHODS[0]
    alpha: float = 0.05

    def to_dict(self) -> dict:
        return {
            "requested": self.requested,
            "confidence": self.confidence,
            "seed": self.seed,
            "level": self.level,
            "interval_method": self.method,
            "method": INTERVAL_NOTES[self.method],
            "failed_fits": self.failed_fits,
            "intervals": json_records(self.intervals),
            "pairwise": json_records(self.pairwise),
        }


def bootstrap_vaar(
    data: pd.DataFrame,
    spec: RefitSpec,
    *,
    draws: int,
    seed: int = 0,
    executor: Executor | None = None,
    observed: pd.DataFrame | None = None,
    observed_paths: pd.DataFrame | None = None,
    confidence: float = 0.95,
    method: str = INTERVAL_METHODS[0],
    progress=None,
) -> BootstrapResult:
    """Bootstrap CIs of every model's VAAR; `data` is the table that was fitted (scored wide).

    `executor` runs the refits (default: local worker processes, see refit_executor).
    `observed` (vaar_scores on the original data) gives the point estimates of the pairwise
    differences and `observed_paths` (its path evidence) the paths the basic methods reflect
    around; without them the data are fitted once more as they are. `method`: one of
    INTERVAL_METHODS, "percentile" by default (see docs/vaar.md). `progress(done, total)` is
    called after each draw.
    """
    if draws < 1:
        raise VaarError(f"bootstrap draws must be >= 1, got {draws}")
    if not 0 < confidence < 1:
        raise VaarError(f"confidence must be between 0 and 1, got {confidence}")
    if method not in INTERVAL_METHODS:
        raise VaarError(
            f"unknown interval method {method!r} (known: {', '.join(INTERVAL_METHODS)})"
        )
    if spec.group not in data.columns:
        raise VaarError(f"data lacks the group column {spec.group!r}")
    spec = RefitSpec(**{**spec.__dict__, "paths": tuple(tuple(_as_path(p)) for p in spec.paths)})
    if executor is None:
        from vaar.alignment.executors import refit_executor

        with refit_executor() as pool:
            return bootstrap_vaar(
                data, spec, draws=draws, seed=seed, executor=pool, observed=observed,
                observed_paths=observed_paths, confidence=confidence, method=method,
                progress=progress,
            )  # fmt: skip
    as_given = None
    if observed is None or observed_paths is None:
        as_given = executor.submit(refit_draw, spec, data, seed, None)
    futures = [executor.submit(refit_draw, spec, data, seed, d) for d in range(draws)]
    results = []
    for done, future in enumerate(as_completed(futures), start=1):
        results.append(future.result())
        if progress:
            progress(done, draws)
    if as_given is not None:
        first = as_given.result()
        if observed is None:
            observed = pd.DataFrame(first["scores"], columns=["model", *METRICS])
        if observed_paths is None:
            observed_paths = pd.DataFrame(first["paths"], columns=list(PATH_COLUMNS))
    results.sort(key=lambda r: r["draw"])
    columns = ["draw", "model", *METRICS, "note"]
    table = pd.DataFrame(
        [{"draw": r["draw"], **s} for r in results for s in r["scores"]], columns=columns
    )
    paths = pd.DataFrame(
        [{"draw": r["draw"], **x} for r in results for x in r["paths"]],
        columns=["draw", *PATH_COLUMNS],
    )
    failed = [{"draw": r["draw"], "error": r["error"]} for r in results if r["error"]]
    result = BootstrapResult(
        table, paths, observed_paths[list(PATH_COLUMNS)].dropna(subset=["z"]), pd.DataFrame(),
        pd.DataFrame(), draws, failed, confidence, seed, spec.level, method, spec.alpha,
    )  # fmt: skip
    models = list(dict.fromkeys(data[spec.group].astype(str)))
    models = [m for m in models if m != spec.reference.human_group]
    result.intervals, result.pairwise = intervals_by(result, models, observed, method)
    return result


def intervals_by(
    result: BootstrapResult, models: list[str], observed: pd.DataFrame | None, method: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-model CIs and pairwise differences from one bootstrap's refits by `method` (the
    bench compares methods on the same draws)."""
    values = result.draws if method == "percentile" else reflected_draws(result, method)
    intervals = _intervals(values, result.draws, models, result.requested, result.confidence)
    return intervals, _pairwise(values, models, observed, result.confidence)


def reflected_draws(result: BootstrapResult, method: str) -> pd.DataFrame:
    """VAAR of every draw with each path reflected around its observed value.

    "basic-z": z** = 2z - z*. "basic-est": z** = (2b - b*) / se, the estimate reflected and
    divided by the observed SE (b / se = z), so a resample's own SE, which rises and falls with
    its estimate when a path is weakly identified, cannot shrink the spread. Either way the
    reflection carries the bootstrap's estimate of the bias to the right side; VAAR_soft itself
    is bounded and skewed, which a percentile interval of it inherits. A draw counts for a
    model when it has every path the observed fit has."""
    rows = []
    observed = result.observed_paths
    for model, mine in observed.groupby("model", sort=False):
        keys = pd.MultiIndex.from_tuples(list(zip(mine["lhs"], mine["rhs"], strict=True)))
        signs = mine["expected_sign"].to_numpy(float)
        z_obs, se_obs = mine["z"].to_numpy(float), mine["z_se"].to_numpy(float)
        drawn = result.paths[result.paths["model"] == model]
        z = drawn.pivot_table(index="draw", columns=["lhs", "rhs"], values="z")
        z = z.reindex(columns=keys).dropna()
        if z.empty:
            continue
        z_star = z.to_numpy(float)
        if method == "basic-est":  # b* / se_obs = z* * se* / se_obs
            se = drawn.pivot_table(index="draw", columns=["lhs", "rhs"], values="z_se")
            z_star = z_star * se.reindex(columns=keys).loc[z.index].to_numpy(float) / se_obs
        metrics = sign_metrics(2 * z_obs - z_star, signs, result.alpha)
        rows.append(pd.DataFrame({"draw": z.index, "model": model, **metrics}))
    columns = ["draw", "model", *METRICS]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def _intervals(values: pd.DataFrame, refits: pd.DataFrame, models, draws, confidence):
    """Quantile CIs of `values` (draw, model, metrics) per model; draw counts and the reasons
    for failed draws from the refits themselves."""
    tail = (1 - confidence) / 2
    rows = []
    for model in models:
        ok = values[(values["model"] == model)].dropna(subset=["vaar_soft"])
        row = {"model": model, "draws_ok": len(ok), "draws_failed": draws - len(ok)}
        for metric in METRICS:
            v = ok[metric].to_numpy(float)
            lo, hi = np.quantile(v, [tail, 1 - tail]) if len(v) else (math.nan,) * 2
            row.update({f"{metric}_ci_lower": float(lo), f"{metric}_ci_upper": float(hi)})
        mine = refits[refits["model"] == model]
        reasons = mine.loc[mine["vaar_soft"].isna(), "note"]
        row["failure_reasons"] = "; ".join(sorted(set(reasons)))[:500]
        rows.append(row)
    return pd.DataFrame(rows)


def _pairwise(table: pd.DataFrame, models, observed, confidence: float) -> pd.DataFrame:
    """Difference a - b of each metric per draw where both models were estimable."""
    tail = (1 - confidence) / 2
    wide = {m: table.pivot_table(index="draw", columns="model", values=m) for m in METRICS}
    point = observed.set_index("model") if observed is not None else None
    rows = []
    for a, b in itertools.combinations(models, 2):
        row = {"model_a": a, "model_b": b}
        for metric in METRICS:
            frame = wide[metric]
            if a in frame.columns and b in frame.columns:
                diff = (frame[a] - frame[b]).dropna().to_numpy(float)
            else:
                diff = np.array([])
            lo, hi = np.quantile(diff, [tail, 1 - tail]) if len(diff) else (math.nan,) * 2
            est = math.nan
            if point is not None and a in point.index and b in point.index:
                est = float(point.loc[a, metric] - point.loc[b, metric])
            row.update(
                {f"{metric}_diff": est, f"{metric}_ci_lower": float(lo),
                 f"{metric}_ci_upper": float(hi)}
            )  # fmt: skip
        row["draws_ok"] = len(diff)
        row["soft_differs"] = bool(
            row["vaar_soft_ci_lower"] > 0 or row["vaar_soft_ci_upper"] < 0
        )  # the soft CI excludes zero
        rows.append(row)
    return pd.DataFrame(rows)
