"""`align()`: VAAR for a fitted study in one call, as one JSON-ready result."""

from __future__ import annotations

import math
from concurrent.futures import Executor
from contextlib import nullcontext
from dataclasses import dataclass

import pandas as pd

from vaar.alignment.bootstrap import (
    METRICS,
    BootstrapResult,
    RefitSpec,
    bootstrap_vaar,
    excluded_groups,
    fit_evidence,
)
from vaar.alignment.executors import refit_executor
from vaar.alignment.lrt import LRT, EvidenceInfo, check_evidence, lrt_evidence
from vaar.alignment.reference import (
    Reference,
    _as_path,
    load_reference,
    reference_from_group,
)
from vaar.alignment.scores import LOGLOSS_FLOOR, scores_from_evidence
from vaar.config import EVIDENCE_METHODS, INTERVAL_METHODS
from vaar.errors import VaarError
from vaar.invariance import BASELINE, INFORMATION
from vaar.sem.lrt import freed_at
from vaar.sem.result import json_records

FORMULA_NOTE = (
    "The paper (Chen, Yu & Hu 2026, arXiv 2601.03546) describes VAAR as a human-referenced "
    "directional agreement metric that aggregates path-level evidence for the expected signs; "
    "its exact formula could not be verified. vaar computes its own definition of that family: "
    'sign evidence c = Phi(s * z) per path, z the Wald z = b / se or (evidence "lrt") the signed '
    "likelihood-ratio z; VAAR_soft = mean c (1 aligned, 0.5 no "
    "information, 0 reversed); VAAR_hard = share of paths with the expected sign and p < alpha; "
    f"VAAR_logloss = -mean log(max(c, {LOGLOSS_FLOOR:g})) (0 = perfect)."
)
DEFINITIONS = {
    "evidence": "Phi(s * z), z the path's Wald or signed likelihood-ratio z (see 'evidence'): "
    "probability-like confidence that the path has the human sign s",
    "vaar_soft": "mean sign evidence over a model's paths (default; 0.5 = no information)",
    "vaar_hard": "share of a model's paths with the expected sign and p < alpha",
    "vaar_logloss": f"-mean log(max(c, {LOGLOSS_FLOOR:g})) over paths; 0 = perfect, "
    f"each path's loss capped at {-math.log(LOGLOSS_FLOOR):.1f}",
}


@dataclass
class AlignmentResult:
    """VAAR per model (`scores`, with bootstrap CI columns when bootstrapped), per-path sign
    evidence, the models that could not be scored and why, and what was scored how."""

    scores: pd.DataFrame
    evidence: pd.DataFrame
    not_estimable: pd.DataFrame
    reference: Reference
    level: str
    level_reason: str
    standardized: bool
    scale_note: str
    alpha: float
    bootstrap: BootstrapResult | None = None
    human_paths: pd.DataFrame | None = None
    evidence_info: EvidenceInfo = EvidenceInfo()

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "evidence": self.evidence_info.to_dict(),
            "level_reason": self.level_reason,
            "scale": "standardized" if self.standardized else "unstandardized",
            "scale_note": self.scale_note,
            "alpha": self.alpha,
            "formula_verified": False,
            "formula_note": FORMULA_NOTE,
            "definitions": DEFINITIONS,
            "logloss_floor": LOGLOSS_FLOOR,
            "scores": json_records(self.scores),
            "path_evidence": json_records(self.evidence),
            "not_estimable": json_records(self.not_estimable),
            "reference": self.reference.to_dict(),
            "human_group": self.reference.human_group,
            "human_paths": json_records(self.human_paths) if self.human_paths is not None else [],
            "bootstrap": self.bootstrap.to_dict() if self.bootstrap else None,
        }


def resolve_level(sem_result, level: str) -> tuple[str, str]:
    """The invariance level whose paths are scored, and a sentence saying why."""
    estimates = sem_result.estimates
    fitted = list(dict.fromkeys(estimates["level"])) if len(estimates) else []
    if not fitted:  # nothing to score; align() lists every model with lavaan's reason
        level = BASELINE if level == "highest" else level
        return level, f"{level} model, which could not be fitted"
    if level == "highest":
        decision = getattr(sem_result, "decision", None) or {}
        highest = decision.get("highest") if isinstance(decision, dict) else None
        if not isinstance(highest, str) or not highest:
            raise VaarError(
                "VAAR level 'highest': the SEM decided no supported invariance level "
                "(the configural model did not converge); score 'configural' or fix the fit"
            )
        rule = decision.get("rule", "the ladder's rule")
        reason = f"highest supported invariance level under {rule}: {highest}"
        level = highest
    else:
        reason = f"{level} model, as requested" if level != BASELINE else (
            "configural model (paths free in every group)"
        )  # fmt: skip
    if level not in fitted:
        raise VaarError(
            f"VAAR level {level!r} was not fitted (fitted: {', '.join(fitted) or 'none'})"
        )
    return level, reason


def align(
    sem_result,
    model_paths,
    reference: Reference | None = None,
    *,
    level: str = BASELINE,
    standardized: bool = False,
    alpha: float = 0.05,
    models: list[str] | None = None,
    human_group: str | None = None,
    bootstrap: BootstrapResult | int | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    executor: Executor | None = None,
    seed: int = 0,
    confidence: float = 0.95,
    interval_method: str = INTERVAL_METHODS[0],
    progress=None,
    evidence: str = EVIDENCE_METHODS[0],
) -> AlignmentResult:
    """Score every model of a fitted SEM against the human reference.

    `level` is "configural", "highest" (the highest invariance level the ladder supports) or a
    fitted level's name. `models` lists every model of the study (default: those fitted and
    those vaar.sem excluded); each one without usable paths is listed in `not_estimable`.
    `human_group` names a group of human respondents in the data: its own path signs become the
    reference (replacing `reference`) and it is reported beside the models, not scored.
    `bootstrap` is a BootstrapResult, or a number of draws to run now: sessions are resampled
    within model from the data vaar.sem fitted (`sem_result.data`) and refitted on local worker
    processes, on the Dask cluster at `scheduler`, or on a given `executor`; CI columns are
    added to `scores`. `interval_method`: one of INTERVAL_METHODS, "percentile" by default
    (docs/vaar.md). `evidence`: "wald" (each path's Wald z) or "lrt" (its signed
    likelihood-ratio z, one refit per model x path on the same executors; vaar.alignment.lrt),
    in the scores and in every bootstrap draw.
    """
    if not 0 < alpha < 1:
        raise VaarError(f"alpha must be between 0 and 1, got {alpha}")
    evidence_method = check_evidence(evidence)
    paths = [_as_path(p) for p in model_paths]
    level, reason = resolve_level(sem_result, level)
    estimates = sem_result.estimates
    if human_group:
        reference = reference_from_group(estimates, paths, human_group, level=level)
    reference = reference or load_reference()
    excluded = excluded_groups(sem_result)
    if models is None:
        models = list(
            dict.fromkeys([*estimates["group"].astype(str), *_data_groups(sem_result), *excluded])
        )
    evidence = fit_evidence(
        sem_result, paths, reference, level=level, standardized=standardized, alpha=alpha,
        models=models,
    )  # fmt: skip
    draws = isinstance(bootstrap, int) and not isinstance(bootstrap, bool) and bootstrap > 0
    draws = draws and bool(len(estimates))  # nothing fitted: nothing to resample either
    lrt, info = evidence_method == LRT and bool(len(estimates)), EvidenceInfo(evidence_method)
    with (
        nullcontext(executor) if executor or not (lrt or draws)
        else refit_executor(scheduler, workers)
    ) as pool:  # fmt: skip
        if lrt:
            evidence, info = lrt_evidence(
                sem_result, evidence, level=level, alpha=alpha, executor=pool
            )
        scores = scores_from_evidence(evidence, level)
        if draws:
            spec = refit_spec(
                sem_result, paths, reference, level, standardized, alpha, evidence_method
            )
            bootstrap = bootstrap_vaar(
                sem_result.data, spec, draws=bootstrap, seed=seed, executor=pool,
                observed=scores, observed_paths=evidence, confidence=confidence,
                method=interval_method, progress=progress,
            )  # fmt: skip
    if not draws and not isinstance(bootstrap, BootstrapResult):
        bootstrap = None
    if bootstrap is not None:
        scores = scores.merge(bootstrap.intervals, on="model", how="left")
    not_estimable = scores.loc[scores["vaar_soft"].isna(), ["model", "note"]].rename(
        columns={"note": "reason"}
    )
    scale_note = (
        "standardized estimates (std_all); sign evidence uses the unstandardized z (est / se), "
        "since vaar.sem gives no SE for std_all"
        if standardized
        else "unstandardized path estimates (est / se)"
    )
    if evidence_method == LRT:
        shown = "standardized estimates (std_all)" if standardized else "unstandardized estimates"
        scale_note = f"{shown}; sign evidence: the signed likelihood-ratio z of each path"
    human = None
    if reference.human_group:
        rows = estimates[(estimates["op"] == "~") & (estimates["level"] == level)]
        human = rows[rows["group"].astype(str) == reference.human_group].reset_index(drop=True)
    return AlignmentResult(
        scores=scores.reset_index(drop=True),
        evidence=evidence,
        not_estimable=not_estimable.reset_index(drop=True),
        reference=reference,
        level=level,
        level_reason=reason,
        standardized=standardized,
        scale_note=scale_note,
        alpha=alpha,
        bootstrap=bootstrap,
        human_paths=human,
        evidence_info=info,
    )


def _data_groups(sem_result) -> list[str]:
    """The groups of the data vaar.sem fitted (also those lavaan gave no estimates for)."""
    data = getattr(sem_result, "data", None)
    group = (getattr(sem_result, "call", None) or {}).get("args", {}).get("group", "model")
    if data is None or group not in data.columns:
        return []
    return list(dict.fromkeys(data[group].astype(str)))


def refit_spec(
    sem_result, paths, reference, level, standardized=False, alpha=0.05, evidence="wald"
) -> RefitSpec:
    """How to refit `sem_result`'s model in a bootstrap draw: the syntax and options vaar.sem
    actually fitted (after dropping degenerate items), scored like the original."""
    data = getattr(sem_result, "data", None)
    syntax = getattr(sem_result, "syntax", "")
    if data is None or not syntax:
        raise VaarError(
            "cannot bootstrap: the SEM result does not carry the data and syntax it fitted "
            "(use vaar.sem.fit_ladder, or call bootstrap_vaar with your own table)"
        )
    call = (getattr(sem_result, "call", None) or {}).get("args", {})
    return RefitSpec(
        syntax=syntax,
        paths=tuple(tuple(_as_path(p)) for p in paths),
        reference=reference,
        level=level,
        estimator=getattr(sem_result, "estimator", None) or call.get("estimator", "MLR"),
        ordered=tuple(call.get("ordered", [])) or False,
        degenerate=(getattr(sem_result, "diagnostics", None) or {}).get(
            "degenerate_strategy", "drop_items"
        ),
        standardized=standardized,
        alpha=alpha,
        group=call.get("group", "model"),
        missing=call.get("missing", "fiml"),
        information=call.get("information", INFORMATION[0]),
        freed=tuple(freed_at(sem_result, level)),
        evidence=evidence,
    )


__all__ = ["METRICS", "AlignmentResult", "align", "resolve_level"]
