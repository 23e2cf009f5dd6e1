"""Read a report's estimates.json back into the StudyResult it was written from.

`build_estimates(read_estimates(path))` gives the same document again (apart from
`generated.utc`). What the document does not hold comes back empty: lavaan's text output, the
data and the R call the SEM fitted (they are in the report's bundle), the bootstrap's draws,
the store's path, the reference's title and entries for paths the model does not have, and the
profiles' split count and seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from vaar.alignment.bootstrap import BootstrapResult
from vaar.alignment.lrt import EvidenceInfo
from vaar.alignment.profile import Profiles
from vaar.alignment.reference import PathEntry, Reference
from vaar.alignment.result import AlignmentResult
from vaar.collection.summary import CollectionSummary
from vaar.errors import VaarError
from vaar.multiverse.result import MultiverseResult
from vaar.report.document import ANSWERS, CITATION_SEPARATOR, validate_estimates
from vaar.result import InstrumentInfo, StudyInfo, StudyResult
from vaar.sem.model import StructuralPath, VaarModel
from vaar.sem.result import ESTIMATE_COLUMNS, FIT_COLUMNS, SemResult

NUMERIC_ESTIMATES = ("est", "se", "z", "pvalue", "ci_lower", "ci_upper", "std_all")


def read_estimates(path: str | Path) -> StudyResult:
    """The StudyResult stored in an estimates.json; VaarError naming the file if it is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise VaarError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    except json.JSONDecodeError as exc:
        raise VaarError(f"{path}: not valid JSON: {exc}") from None
    validate_estimates(doc, source=str(path))
    try:
        return study_result(doc)
    except (KeyError, TypeError, ValueError) as exc:  # valid JSON Schema, but not vaar's writing
        raise VaarError(f"{path}: not an estimates.json written by vaar ({exc!r})") from None


def study_result(doc: dict) -> StudyResult:
    """The StudyResult of an estimates document (one that matches the schema)."""
    return StudyResult(
        study=StudyInfo(**doc["study"]),
        instruments=[InstrumentInfo(**i) for i in doc["instruments"]],
        collection=_collection(doc["collection"]),
        model=VaarModel(
            doc["model"]["syntax"],
            [StructuralPath(p["lhs"], p["rhs"], p["role"]) for p in doc["model"]["paths"]],
            [],
        ),
        sem=_sem(doc),
        alignment=_alignment(doc["alignment"]),
        profiles=_profiles(doc["profiles"]),
        multiverse=MultiverseResult.from_dict(doc["multiverse"]) if doc.get("multiverse") else None,
        provenance=doc["provenance"],
        timings=doc["timings"],
    )


def _frame(rows: list[dict], columns=()) -> pd.DataFrame:
    """A stored table (null becomes NaN in numeric columns); with `columns` when empty."""
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(columns))


def _collection(section: dict) -> CollectionSummary:
    return CollectionSummary(
        None,
        models={row["model"]: _model_stats(row) for row in section["models"]},
        incomplete=section["incomplete"],
        stopped=section["stopped"],
        elapsed=section["elapsed"],
        unscored_examples=section["unscored_examples"],
    )


def _model_stats(row: dict) -> dict:
    """One model's collection stats from its flat row: `answers_ok` etc. back into `answers`
    (the valid-answer rate is computed from them again)."""
    stats: dict = {}
    prefix = f"{ANSWERS}_"
    for key, value in row.items():
        if key.startswith(prefix):
            stats.setdefault(ANSWERS, {})[key.removeprefix(prefix)] = value
        elif key != "model":
            stats[key] = value
    if ANSWERS in stats:
        del stats["valid_rate"]
    return stats


def _sem(doc: dict) -> SemResult:
    invariance, diagnostics = doc["invariance"], doc["diagnostics"]
    estimates = _frame(doc["estimates"], ESTIMATE_COLUMNS)
    for column in NUMERIC_ESTIMATES:
        if column in estimates:
            estimates[column] = pd.to_numeric(estimates[column])
    return SemResult(
        estimates=estimates,
        fits=_frame(invariance["fits"], FIT_COLUMNS),
        comparisons=_frame(invariance["comparisons"]),
        decision=invariance["decision"],
        diagnostics={
            **{k: v for k, v in diagnostics.items() if k != "other"},
            **diagnostics["other"],
        },
        lavaan_output={},
        versions=doc["provenance"].get("r", {}),
        group_fits=_frame(invariance["group_fits"], ["level", "group", "chisq"]),
        partial=_frame(invariance["partial"]),
        equal_paths=invariance["equal_paths"],
        estimator=doc["study"]["estimator"],
    )


def _alignment(section: dict | None) -> AlignmentResult | None:
    if section is None:
        return None
    human_paths = _frame(section["human_paths"])
    return AlignmentResult(
        scores=_frame(section["scores"]),
        evidence=_frame(section["path_evidence"]),
        not_estimable=_frame(section["not_estimable"], ["model", "reason"]),
        reference=_reference(section, human_paths),
        level=section["level"],
        level_reason=section["level_reason"],
        standardized=section["scale"] == "standardized",
        scale_note=section["scale_note"],
        alpha=section["alpha"],
        bootstrap=_bootstrap(section["bootstrap"], section["alpha"]),
        human_paths=human_paths if len(human_paths) else None,
        evidence_info=_evidence(section.get("evidence")),
    )


def _evidence(section: dict | None) -> EvidenceInfo:
    """Which sign evidence was used (documents before schema 1.1: the Wald z)."""
    if not section:
        return EvidenceInfo()
    keys = ("method", "lrt_method", "refits", "seconds")
    return EvidenceInfo(**{k: section[k] for k in keys if section.get(k) is not None})


def _reference(section: dict, human_paths: pd.DataFrame) -> Reference:
    """The reference's entries for the model's paths, as the document states them."""
    entries = [
        PathEntry(
            lhs=row["lhs"],
            rhs=row["rhs"],
            sign=row["expected_sign"],
            rationale=row["rationale"],
            citations=row["citations"].split(CITATION_SEPARATOR) if row["citations"] else [],
        )
        for row in section["reference"]
    ]
    human_group = str(human_paths["group"].iloc[0]) if len(human_paths) else None
    return Reference(paths=entries, source=section["reference_source"], human_group=human_group)


def _bootstrap(section: dict | None, alpha: float) -> BootstrapResult | None:
    if section is None:
        return None
    empty = pd.DataFrame()
    return BootstrapResult(
        draws=empty,
        paths=empty,
        observed_paths=empty,
        intervals=_frame(section["intervals"]),
        pairwise=_frame(section["pairwise"]),
        requested=section["requested"],
        failed_fits=section["failed_fits"],
        confidence=section["confidence"],
        seed=section["seed"],
        level=section["level"],
        method=section["interval_method"],
        alpha=alpha,
    )


def _profiles(section: dict) -> Profiles | None:
    if not section["table"] and not section["stability"]:
        return None
    return Profiles(_frame(section["table"]), _frame(section["stability"]), None, None)
