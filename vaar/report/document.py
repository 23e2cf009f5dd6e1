"""One JSON-ready document per study (`estimates.json`). The HTML page, the CSV tables and the
JSON file are all rendered from this one dict, so they can never disagree.

This module only *collects and reshapes* numbers computed elsewhere (vaar.sem, vaar.alignment,
vaar.collection); it never computes a statistic itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING

import jsonschema

from vaar import __version__
from vaar.errors import VaarError
from vaar.files import package_path
from vaar.sem.result import json_ready, json_records

if TYPE_CHECKING:
    from vaar.alignment.profile import Profiles
    from vaar.alignment.reference import Reference
    from vaar.alignment.result import AlignmentResult
    from vaar.collection.summary import CollectionSummary
    from vaar.result import StudyResult
    from vaar.sem.model import VaarModel

SCHEMA_VERSION = "1.1"  # 1.1: `multiverse` (issue 17), `alignment.evidence` (issue 13)
SCHEMA_PATH = package_path("report", "estimates.schema.json")
ANSWERS = "answers"  # the per-model answer-status counts, flat in the document: answers_ok, ...
CITATION_SEPARATOR = "; "  # a reference entry's citations, in one text field


def _collection(summary: CollectionSummary) -> dict:
    """Per-model collection rows (sessions, valid-answer rate, tokens, cost), a few answers that
    could not be scored, and what stopped or left the collection incomplete."""
    return {
        "models": [_collection_row(m, stats) for m, stats in summary.models.items()],
        "unscored_examples": summary.unscored_examples,
        "incomplete": list(summary.incomplete),
        "stopped": summary.stopped,
        "elapsed": summary.elapsed,
    }


def _collection_row(model: str, stats: dict) -> dict:
    """One model's summary, flat: the answer-status counts become `answers_ok` etc., and the
    valid-answer rate is the share of answers with status ok."""
    row: dict = {"model": model}
    for key, value in stats.items():
        if key == ANSWERS:
            row.update({f"{ANSWERS}_{status}": n for status, n in value.items()})
        else:
            row[key] = value
    if ANSWERS in stats:
        total = sum(stats[ANSWERS].values())
        row["valid_rate"] = stats[ANSWERS].get("ok", 0) / total if total else None
    return row


def _model(model: VaarModel) -> dict:
    paths = [{"lhs": p.lhs, "rhs": p.rhs, "role": p.role} for p in model.paths]
    return {"syntax": model.syntax, "paths": paths}


DIAGNOSTIC_LISTS = ("dropped_items", "excluded_groups", "warnings", "errors", "messages", "flags")


def _diagnostics(diagnostics: dict) -> dict:
    """Dropped items, excluded groups, lavaan's warnings and errors, flags; anything else the
    SEM stage reports is kept under `other`."""
    out = {key: diagnostics.get(key) or [] for key in DIAGNOSTIC_LISTS}
    out["other"] = {k: v for k, v in diagnostics.items() if k not in out}
    return out


def _reference_rows(reference: Reference, paths: list[dict]) -> list[dict]:
    """The expected sign of each fitted structural path, with the reference's rationale."""
    rows = []
    for path in paths:
        try:
            entry = reference.lookup((path["lhs"], path["rhs"], path["role"] or ""))
        except VaarError:
            continue
        rows.append(
            {
                "lhs": path["lhs"],
                "rhs": path["rhs"],
                "role": path["role"],
                "expected_sign": entry.sign,
                "rationale": entry.rationale,
                "citations": CITATION_SEPARATOR.join(entry.citations),
            }
        )
    return rows


ALIGNMENT_SCORES = ("level", "evidence", "alpha", "formula_verified", "definitions", "scores",
                    "path_evidence", "not_estimable")  # fmt: skip
ALIGNMENT_TEXT = ("level_reason", "scale", "scale_note", "formula_note")


def _alignment(alignment: AlignmentResult | None, paths: list[dict]) -> dict | None:
    """VAAR scores, per-path evidence and what they were scored against, from vaar.alignment."""
    if alignment is None:
        return None
    d = alignment.to_dict()
    return {
        **{k: d[k] for k in ALIGNMENT_SCORES},
        "reference": _reference_rows(alignment.reference, paths),
        "reference_source": alignment.reference.source,
        "human_paths": d["human_paths"],
        "bootstrap": d["bootstrap"],
        **{k: d[k] for k in ALIGNMENT_TEXT},
    }


def _profiles(profiles: Profiles | None) -> dict:
    """Profile rows (model x instrument, factor "*" = whole instrument) and their stability."""
    if profiles is None:
        return {"table": [], "stability": []}
    return {"table": json_records(profiles.table), "stability": json_records(profiles.stability)}


RELIABILITY_COLUMNS = ("model", "instrument", "factor", "n_items", "n_sessions", "alpha", "omega",
                       "note")  # fmt: skip


def _reliability(profile_rows: list[dict]) -> list[dict]:
    """Cronbach's alpha and McDonald's omega per model and scale, from the profiles."""
    return [{k: row[k] for k in RELIABILITY_COLUMNS} for row in profile_rows]


def build_estimates(result: StudyResult) -> dict:
    """The one document everything else is rendered from; validated against the schema."""
    sem = result.sem
    estimates = json_records(sem.estimates)
    model = _model(result.model)
    profiles = _profiles(result.profiles)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "generated": {
            "by": f"vaar {__version__}",
            "utc": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "study": asdict(result.study),
        "instruments": [asdict(i) for i in result.instruments],
        "collection": _collection(result.collection),
        "model": model,
        "invariance": {
            "fits": json_records(sem.fits),
            "comparisons": json_records(sem.comparisons),
            "decision": sem.decision,
            "partial": json_records(sem.partial),
            "equal_paths": sem.equal_paths,
            "group_fits": json_records(sem.group_fits),
        },
        "estimates": estimates,
        "structural": [row for row in estimates if row["op"] == "~"],
        "alignment": _alignment(result.alignment, model["paths"]),
        "profiles": profiles,
        "reliability": _reliability(profiles["table"]),
        "multiverse": result.multiverse.to_dict() if result.multiverse else None,
        "diagnostics": _diagnostics(sem.diagnostics),
        "provenance": result.provenance,
        "timings": result.timings,
    }
    doc = json_ready(doc)
    validate_estimates(doc)
    return doc


@cache
def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_estimates(doc: dict, source: str = "estimates.json") -> None:
    """Raise VaarError naming the most relevant schema violation (path and message)."""
    validator = jsonschema.Draft202012Validator(load_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        message = error.message if len(error.message) <= 200 else error.message[:200] + " …"
        raise VaarError(f"{source} does not match its schema at {where}: {message}")
