"""Identification-invariant sign evidence: the signed likelihood-ratio z of every scored path.

The Wald z = b / se of a latent regression depends on how the factors are identified (which
indicator is the marker, or std.lv): b and se change by different factors. The likelihood ratio
of the model with the path fixed at 0 does not, since "b = 0" is the same restriction under
every identification. So with `evidence = "lrt"` each path k of each group g is tested by one
refit of the scored level's model with that path fixed at 0 in g only (vaar.sem.lrt), and

    z = sign(b) * sqrt(max(chi2_diff, 0))

(the scaled difference for MLR and WLSMV) replaces the Wald z in the evidence Phi(s * z) and in
VAAR_hard's p-value. The refits of one group are one job on the executor the bootstrap uses (R
workers); a refit that fails leaves that path not estimable, with the reason.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from scipy.stats import norm

from vaar.config import EVIDENCE_METHODS
from vaar.errors import VaarError
from vaar.sem.lrt import LRT_METHODS, PathTest, level_model, run_path_tests

WALD, LRT = EVIDENCE_METHODS
DESCRIPTIONS = {
    WALD: "Wald z = est / se of each path (lavaan's); depends on how the factors are "
    "identified (the marker indicator, or std.lv)",
    LRT: "signed likelihood-ratio z = sign(est) * sqrt(chi-square difference) of the scored "
    "level's model against a refit with that path fixed at 0 in that group only (lavTestLRT, "
    "scaled for MLR/WLSMV); the same under every identification of the factors",
}


@dataclass(frozen=True)
class EvidenceInfo:
    """Which sign evidence was used, and for LRT what it took."""

    method: str = WALD
    lrt_method: str | None = None  # lavTestLRT's method for the estimator
    refits: int = 0  # restricted refits (group x path)
    seconds: float | None = None  # wall time of the LRT refits

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "description": DESCRIPTIONS[self.method],
            "lrt_method": self.lrt_method,
            "refits": self.refits,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
        }


def check_evidence(method: str) -> str:
    if method not in EVIDENCE_METHODS:
        raise VaarError(f"unknown sign evidence {method!r} (known: {', '.join(EVIDENCE_METHODS)})")
    return method


def lrt_evidence(
    sem_result, evidence: pd.DataFrame, *, level: str, alpha: float,
    executor: Executor | None = None,
) -> tuple[pd.DataFrame, EvidenceInfo]:  # fmt: skip
    """`evidence` (path_evidence rows, Wald) with z, pvalue, evidence and supports from the
    signed LR test of each path whose Wald estimate is usable; `wald_z` keeps the Wald z and
    `lr_chisq` the chi-square difference. One job per group on `executor` (none: here)."""
    out = evidence.assign(wald_z=evidence["z"], lr_chisq=math.nan)
    todo = out[out["evidence"].notna()]
    if todo.empty:
        return out, EvidenceInfo(LRT, None, 0, 0.0)
    model = level_model(sem_result, level)
    data = sem_result.data
    start = time.perf_counter()
    jobs = {
        group: [(group, r.lhs, r.rhs) for r in rows.itertuples()]
        for group, rows in todo.groupby("model", sort=False)
    }
    if executor is None:
        calls = {g: partial(run_path_tests, data, model, p) for g, p in jobs.items()}
    else:
        futures = {g: executor.submit(run_path_tests, data, model, p) for g, p in jobs.items()}
        calls = {g: future.result for g, future in futures.items()}
    results = {g: _tests(call, jobs[g]) for g, call in calls.items()}
    seconds = time.perf_counter() - start
    tests = {(t.group, t.lhs, t.rhs): t for group_tests in results.values() for t in group_tests}
    for index, row in todo.iterrows():
        values = _signed(row, tests[(row["model"], row["lhs"], row["rhs"])], alpha)
        out.loc[index, list(values)] = list(values.values())
    return out, EvidenceInfo(LRT, model.method, len(todo), seconds)


def _tests(run, paths) -> list[PathTest]:
    """The tests of one group's job, or every path failed with the job's error."""
    try:
        return run()
    except Exception as exc:  # a failed job is that group's reason, not a crash
        why = f"{type(exc).__name__}: {exc}"
        return [PathTest(g, lhs, rhs, error=why) for g, lhs, rhs in paths]


def _signed(row, test: PathTest, alpha: float) -> dict:
    """The evidence columns of one path from its LR test."""
    if test.error or not math.isfinite(test.chisq_diff):
        why = test.error or "lavTestLRT gave no chi-square difference"
        return {
            "z": math.nan, "z_se": math.nan, "pvalue": math.nan, "evidence": math.nan,
            "supports": False, "note": f"not estimable: the refit with {row['lhs']} ~ "
            f"{row['rhs']} fixed at 0 in {row['model']}: {why}",
        }  # fmt: skip
    z = float(np.sign(row["est"])) * math.sqrt(max(test.chisq_diff, 0.0))
    pvalue = test.pvalue if math.isfinite(test.pvalue) else float(2 * norm.sf(abs(z)))
    b = row["wald_z"] * row["z_se"]  # the unstandardized estimate (est may be std_all)
    return {
        "z": z,
        "z_se": b / z if z else math.nan,  # the SE this z implies: b / z (basic-est intervals)
        "pvalue": pvalue,
        "lr_chisq": test.chisq_diff,
        "evidence": float(norm.cdf(row["expected_sign"] * z)),
        "supports": bool(np.sign(z) == row["expected_sign"] and pvalue < alpha),
    }


__all__ = ["DESCRIPTIONS", "LRT_METHODS", "EvidenceInfo", "check_evidence", "lrt_evidence"]
