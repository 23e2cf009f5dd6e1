"""SemResult: everything one ladder run produced, as pandas tables and plain dicts, so the
alignment and report stages never touch R."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vaar.sem.identification import judge

ESTIMATE_COLUMNS = [
    "level", "group", "lhs", "op", "rhs", "label", "est", "se", "z", "pvalue",
    "ci_lower", "ci_upper", "std_all",
]  # fmt: skip
FIT_COLUMNS = [
    "level", "converged", "post_check", "npar", "chisq", "df", "pvalue", "chisq_scaled",
    "df_scaled", "pvalue_scaled", "cfi", "tli", "cfi_scaled", "tli_scaled", "cfi_robust",
    "tli_robust", "rmsea", "rmsea_ci_lower", "rmsea_ci_upper", "rmsea_scaled", "rmsea_robust",
    "rmsea_ci_lower_robust", "rmsea_ci_upper_robust", "srmr", "aic", "bic",
]  # fmt: skip


def _frame(value, columns=None) -> pd.DataFrame:
    if isinstance(value, pd.DataFrame):
        frame = value.copy()
        frame.columns = [str(c).replace(".", "_") for c in frame.columns]
        return frame
    return pd.DataFrame(columns=columns or [])


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


@dataclass
class SemResult:
    """One multi-group analysis. `decision["highest"]` is the highest invariance level that
    holds under `decision["rule"]` (None when even the configural model failed)."""

    estimates: pd.DataFrame
    fits: pd.DataFrame
    comparisons: pd.DataFrame
    decision: dict
    diagnostics: dict
    lavaan_output: dict
    versions: dict
    group_fits: pd.DataFrame = field(default_factory=pd.DataFrame)
    partial: pd.DataFrame = field(default_factory=pd.DataFrame)
    equal_paths: dict | None = None
    bootstrap: pd.DataFrame = field(default_factory=pd.DataFrame)
    options: dict = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)
    estimator: str | None = None
    syntax: str = ""  # the model as fitted (after dropping degenerate items)
    call: dict = field(default_factory=dict)  # R function and arguments, for the bundle
    data: pd.DataFrame | None = field(default=None, repr=False)  # the exact data fitted

    @classmethod
    def from_r(cls, raw: dict, diagnostics: dict) -> SemResult:
        """Build from the list vaar_fit_ladder() returns (see r/ladder.R)."""
        decision = dict(raw["decision"])
        decision["freed"] = _as_list(decision.get("freed"))
        decision["levels_tested"] = _as_list(decision.get("levels_tested"))
        decision["level"] = decision.get("highest")  # alias used by the service summary
        messages = _frame(raw.get("messages"), ["level", "type", "message"])
        flags = _frame(raw.get("flags"), ["level", "flag", "detail"])
        diagnostics = {
            **diagnostics,
            "warnings": [
                f"{m['level']}: {m['message']}" for m in messages.to_dict("records")
                if m.get("type") == "warning"
            ],
            "errors": [
                f"{m['level']}: {m['message']}" for m in messages.to_dict("records")
                if m.get("type") == "error"
            ],
            "flags": flags.to_dict(orient="records"),
            "missing": (raw.get("options") or {}).get("missing"),
            "information": information_used(raw.get("information")),
        }  # fmt: skip
        fits = _frame(raw.get("fits"), FIT_COLUMNS)
        decision, comparisons = judge(decision, fits, _frame(raw.get("comparisons")), flags)
        equal = _frame(raw.get("equal_paths"))
        summaries = raw.get("summaries") or {}
        if isinstance(summaries, str):
            summaries = {"configural": summaries}
        return cls(
            estimates=_frame(raw.get("estimates"), ESTIMATE_COLUMNS),
            fits=fits,
            comparisons=comparisons,
            decision=decision,
            diagnostics=diagnostics,
            lavaan_output=dict(summaries),
            versions=dict(raw.get("versions") or {}),
            group_fits=_frame(raw.get("group_fits"), ["level", "group", "chisq"]),
            partial=_frame(raw.get("partial")),
            equal_paths=equal.iloc[0].to_dict() if len(equal) else None,
            bootstrap=_frame(raw.get("bootstrap")),
            options=dict(raw.get("options") or {}),
            groups=_as_list(raw.get("group_labels")),
        )

    @property
    def highest_level(self) -> str | None:
        return self.decision.get("highest")

    def paths(self, level: str | None = None) -> pd.DataFrame:
        """Structural regressions (op '~') at one level (default: the highest that holds)."""
        level = level or self.highest_level
        est = self.estimates
        return est[(est["op"] == "~") & (est["level"] == level)].reset_index(drop=True)

    def to_dict(self) -> dict:
        """JSON-ready plain data (NaN becomes None)."""
        return {
            "estimates": json_records(self.estimates),
            "fits": json_records(self.fits),
            "group_fits": json_records(self.group_fits),
            "comparisons": json_records(self.comparisons),
            "decision": json_ready(self.decision),
            "partial": json_records(self.partial),
            "equal_paths": json_ready(self.equal_paths),
            "bootstrap": json_records(self.bootstrap),
            "diagnostics": json_ready(self.diagnostics),
            "options": json_ready(self.options),
            "estimator": self.estimator,
            "syntax": self.syntax,
            "call": json_ready(self.call),
            "groups": list(self.groups),
            "versions": dict(self.versions),
            "lavaan_output": dict(self.lavaan_output),
        }


OBSERVED_HOW = {"h1": "analytically from the unrestricted (h1) model", "hessian": "by a "
                "numerical Hessian"}  # fmt: skip


def information_used(record: dict | None) -> dict | None:
    """What information matrix lavaan used for the standard errors and the (scaled) test, as
    it reports it (r/fit.R: vaar_information), with a sentence for the report."""
    if not record:
        return None
    record = {k: v for k, v in record.items() if v is not None}

    def matrix(key: str) -> str:
        text = f"{record.get(key)} information"
        how = record.get("observed")
        return text + (f" (computed {OBSERVED_HOW.get(how, how)})" if "observed" in text else "")

    if record.get("se") == record.get("test"):
        text = f"{matrix('se')} for the standard errors and the scaled test"
    else:
        text = f"{matrix('se')} for the standard errors, {matrix('test')} for the scaled test"
    if record.get("h1"):
        text += f"; h1 information {record['h1']}"
    return {**record, "text": text}


def json_records(frame: pd.DataFrame) -> list[dict]:
    """A table's rows as JSON-ready dicts (see json_ready)."""
    return [json_ready(r) for r in frame.to_dict(orient="records")]


def json_ready(value):
    """Plain JSON data: NaN and infinities become None, numpy values plain Python ones."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        return json_ready(value.item())
    return value
