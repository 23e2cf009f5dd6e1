"""One JSON-ready document per study (`estimates.json`). The HTML page, the CSV tables and the
JSON file are all rendered from this one dict, so they can never disagree.

This module only *collects and reshapes* numbers computed elsewhere (vaar.sem, vaar.alignment,
vaar.collection); it never computes a statistic itself.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd

from vaar import __version__
from vaar.errors import VaarError

SCHEMA_VERSION = "1.0"
SCHEMA_PATH = Path(__file__).with_name("estimates.schema.json")


def plain(value: Any) -> Any:
    """Turn pandas/numpy/pydantic/dataclass values into JSON-ready data (NaN and inf -> None)."""
    if isinstance(value, pd.DataFrame):
        return [plain(row) for row in value.to_dict("records")]
    if isinstance(value, pd.Series):
        return plain(value.to_dict())
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | str | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return plain(value.model_dump(mode="json"))
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if hasattr(value, "to_dict"):
        return plain(value.to_dict())
    if value is pd.NA or value is pd.NaT:
        return None
    return str(value)


def records(value: Any) -> list[dict]:
    """Rows as a list of dicts, from a DataFrame, a list of dicts or a dict of columns."""
    if value is None:
        return []
    if isinstance(value, pd.DataFrame):
        return plain(value)
    value = plain(value)
    if isinstance(value, list):
        return [row for row in value if isinstance(row, dict)]
    if isinstance(value, dict) and value and all(isinstance(v, list) for v in value.values()):
        return plain(pd.DataFrame(value))
    return []


def _part(obj: Any, as_dict: dict, *names: str) -> Any:
    """A named part of a result object: its to_dict() entry if present, else the attribute;
    the first of `names` that exists."""
    for name in names:
        value = as_dict[name] if name in as_dict else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _as_dict(obj: Any) -> dict:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    if hasattr(obj, "to_dict"):
        out = obj.to_dict()
        return out if isinstance(out, dict) else {}
    return {}


def _instrument(inst: Any) -> dict:
    return {
        "id": inst.id,
        "title": inst.title,
        "short_title": inst.short_title,
        "role": inst.role,
        "citation": inst.citation,
        "provenance": getattr(inst, "provenance", ""),
        "vaar_own": bool(getattr(inst, "vaar_own", False)),
        "n_items": len(inst.items),
        "scale_min": inst.scale_min,
        "scale_max": inst.scale_max,
        "factors": list(dict.fromkeys(inst.factors)),
        "content_hash": inst.content_hash,
    }


def _study(result: Any, estimates: list[dict]) -> dict:
    """What was studied. Models are the study's, else the SEM's groups, else the table's."""
    study = result.study
    wide = result.wide
    models = list(dict.fromkeys(str(r["group"]) for r in estimates if r.get("group") is not None))
    if not models and "model" in wide:
        models = [str(m) for m in pd.unique(wide["model"])]
    out = {
        "name": result.name,
        "description": study.description if study else "",
        "seed": study.seed if study else None,
        "models": [m.name for m in study.models] if study else models,
        "sessions_per_model": study.sessions_per_model if study else None,
        "n_sessions": int(len(wide)),
        "estimator": None,
        "levels": [],
        "vaar_level": None,
        "alpha": None,
        "history": plain(study.session.history) if study else None,
        "items_per_turn": study.session.items_per_turn if study else None,
    }
    if study:
        a = study.analysis
        out.update(estimator=a.estimator, levels=list(a.levels), vaar_level=a.vaar_level)
        out["alpha"] = a.alpha
    return out


def _collection_row(model: str, stats: dict) -> dict:
    """One model's collection summary, flat: nested counts become `answers_ok` etc., and the
    valid-answer rate is the share of answers with status ok."""
    row: dict = {"model": str(model)}
    for key, value in stats.items():
        if isinstance(value, dict):
            row.update({f"{key}_{k}": v for k, v in value.items()})
        else:
            row[key] = value
    answers = stats.get("answers")
    if isinstance(answers, dict) and "valid_rate" not in row:
        total = sum(v for v in answers.values() if isinstance(v, int | float))
        row["valid_rate"] = answers.get("ok", 0) / total if total else None
    return row


def _collection(result: Any) -> dict:
    """Per-model collection rows (sessions, valid-answer rate, tokens, cost) and what stopped or
    left the collection incomplete. Without a collection summary (a data file), sessions and
    answer statuses are counted from the tables."""
    raw = plain(result.collection or {})
    per_model = raw.get("models", {}) if isinstance(raw, dict) else {}
    if isinstance(per_model, list):
        per_model = {r["model"]: r for r in per_model if isinstance(r, dict) and "model" in r}
    rows = [
        _collection_row(m, {k: v for k, v in s.items() if k != "model"})
        for m, s in per_model.items()
        if isinstance(s, dict)
    ]
    if not rows:
        rows = _counted_collection(result)
    return {
        "models": rows,
        "unscored_examples": _unscored_examples(result.long),
        "incomplete": [str(x) for x in raw.get("incomplete", []) or []],
        "stopped": raw.get("stopped"),
        "elapsed": raw.get("elapsed"),
    }


UNSCORED_PER_MODEL = 5
UNSCORED_MAX_CHARS = 300


def _unscored_examples(long: pd.DataFrame | None) -> list[dict]:
    """A few answers per model that could not be scored (invalid, refused, error), verbatim
    but shortened: what the models actually said is the first thing to check."""
    needed = {"model", "session", "item", "status", "raw"}
    if long is None or not needed <= set(long.columns):
        return []
    bad = long[(long["status"] != "ok") & long["raw"].notna()]
    bad = bad[bad["raw"].astype(str).str.strip() != ""]
    rows = []
    for _, group in bad.groupby("model", sort=False):
        for row in group.head(UNSCORED_PER_MODEL).itertuples():
            raw = str(row.raw)
            if len(raw) > UNSCORED_MAX_CHARS:
                raw = raw[:UNSCORED_MAX_CHARS] + " …"
            rows.append(
                {
                    "model": str(row.model),
                    "session": str(row.session),
                    "item": str(row.item),
                    "status": str(row.status),
                    "raw": raw,
                }
            )
    return rows


def _counted_collection(result: Any) -> list[dict]:
    wide = result.wide
    if "model" not in wide:
        return []
    counts = wide.groupby("model", sort=False).size()
    valid = {}
    if result.long is not None and "status" in result.long:
        valid = (result.long["status"] == "ok").groupby(result.long["model"], sort=False).mean()
    return [
        {"model": str(m), "sessions": int(n), "valid_rate": plain(valid.get(m))}
        for m, n in counts.items()
    ]


def _model_syntax(model: Any) -> dict:
    if model is None:
        return {"syntax": "", "paths": []}
    if isinstance(model, str):
        return {"syntax": model, "paths": []}
    paths = [
        {"lhs": p.lhs, "rhs": p.rhs, "role": p.role} if hasattr(p, "lhs") else plain(p)
        for p in getattr(model, "paths", []) or []
    ]
    return {"syntax": getattr(model, "syntax", "") or "", "paths": paths}


def _entries(value: Any, key: str, detail: str) -> list:
    """A diagnostics list from either a list or a {name: reason} mapping."""
    if isinstance(value, dict):
        return [{key: str(k), detail: v} for k, v in value.items()]
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _diagnostics(raw: Any) -> dict:
    """Dropped items, excluded groups, lavaan's warnings and errors, flags; anything else the
    SEM stage reports is kept under `other`."""
    raw = plain(raw) or {}
    if not isinstance(raw, dict):
        raw = {"warnings": raw if isinstance(raw, list) else [str(raw)]}
    excluded = [
        e if isinstance(e, dict) else {"group": str(e), "reason": "excluded by vaar.sem"}
        for e in _entries(raw.get("excluded_groups"), "group", "reason")
    ]
    out = {
        "dropped_items": _entries(raw.get("dropped_items"), "item", "reason"),
        "excluded_groups": excluded,
        "warnings": _entries(raw.get("warnings"), "source", "message"),
        "errors": _entries(raw.get("errors"), "source", "message"),
        "messages": _entries(raw.get("messages"), "level", "message"),
        "flags": _entries(raw.get("flags"), "level", "flag"),
    }
    out["other"] = {k: v for k, v in raw.items() if k not in out}
    return out


def _reference_rows(reference: Any, paths: list[dict]) -> list[dict]:
    """The expected sign of each fitted structural path, with the reference's rationale."""
    if reference is None:
        return []
    if not hasattr(reference, "lookup"):
        return records(reference)
    rows = []
    for path in paths:
        try:
            entry = reference.lookup((path["lhs"], path["rhs"], path.get("role") or ""))
        except VaarError:
            continue
        rows.append(
            {
                "lhs": path["lhs"],
                "rhs": path["rhs"],
                "role": path.get("role"),
                "expected_sign": entry.sign,
                "rationale": entry.rationale,
                "citations": "; ".join(entry.citations),
            }
        )
    return rows


ALIGNMENT_TEXT = ("level_reason", "scale", "scale_note", "formula_note")


def _alignment(result: Any, paths: list[dict]) -> dict | None:
    """VAAR scores, per-path evidence and what they were scored against, from vaar.alignment."""
    alignment = result.alignment
    if alignment is None:
        return None
    d = _as_dict(alignment)
    reference = getattr(alignment, "reference", None)  # the live object, for lookup()
    if reference is None:
        reference = d.get("reference")
    out = {
        "level": plain(_part(alignment, d, "level")),
        "alpha": plain(_part(alignment, d, "alpha")),
        "formula_verified": bool(d.get("formula_verified", False)),
        "definitions": plain(d.get("definitions") or {}),
        "scores": records(_part(alignment, d, "scores")),
        "path_evidence": records(_part(alignment, d, "path_evidence", "evidence")),
        "not_estimable": records(_part(alignment, d, "not_estimable")),
        "reference": _reference_rows(reference, paths),
        "reference_source": plain(getattr(reference, "source", None) or ""),
        "human_paths": records(_part(alignment, d, "human_paths")),
        "bootstrap": plain(_part(alignment, d, "bootstrap")),
    }
    out.update({k: str(d.get(k) or "") for k in ALIGNMENT_TEXT})
    out["scale"] = d.get("scale")
    return out


RELIABILITY_COLUMNS = ("model", "instrument", "factor", "n_items", "n_sessions", "alpha", "omega")


def _profiles(result: Any) -> dict:
    """Profile rows (model x instrument, factor "*" = whole instrument) and their stability."""
    profiles = result.profiles
    if profiles is None or isinstance(profiles, pd.DataFrame | list):
        return {"table": records(profiles), "stability": []}
    d = _as_dict(profiles)
    return {
        "table": records(_part(profiles, d, "table")),
        "stability": records(_part(profiles, d, "stability")),
    }


def _reliability(result: Any, profile_rows: list[dict]) -> list[dict]:
    """Reliability rows: from vaar.sem if it reports them, else the profiles' alpha/omega."""
    sem = result.sem
    rows = records(_part(sem, _as_dict(sem), "reliability")) if sem is not None else []
    if rows:
        return rows
    keep = [r for r in profile_rows if "alpha" in r or "omega" in r]
    return [
        {k: r.get(k) for k in (*RELIABILITY_COLUMNS, "note") if k in r or k in ("alpha", "omega")}
        for r in keep
    ]


def build_estimates(result: Any) -> dict:
    """The one document everything else is rendered from; validated against the schema."""
    sem = result.sem
    sem_d = _as_dict(sem)
    estimates = records(_part(sem, sem_d, "estimates"))
    model = _model_syntax(result.model)
    profiles = _profiles(result)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "generated": {
            "by": f"vaar {__version__}",
            "utc": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "study": _study(result, estimates),
        "instruments": [_instrument(i) for i in result.instruments],
        "collection": _collection(result),
        "model": model,
        "invariance": {
            "fits": records(_part(sem, sem_d, "fits")),
            "comparisons": records(_part(sem, sem_d, "comparisons")),
            "decision": plain(_part(sem, sem_d, "decision")) or {},
            "partial": records(_part(sem, sem_d, "partial")),
            "equal_paths": plain(_part(sem, sem_d, "equal_paths")),
            "group_fits": records(_part(sem, sem_d, "group_fits")),
        },
        "estimates": estimates,
        "structural": [row for row in estimates if row.get("op") == "~"],
        "alignment": _alignment(result, model["paths"]),
        "profiles": profiles,
        "reliability": _reliability(result, profiles["table"]),
        "diagnostics": _diagnostics(_part(sem, sem_d, "diagnostics")),
        "provenance": plain(result.provenance or {}),
        "timings": plain(result.timings or {}),
    }
    study = doc["study"]
    if study["estimator"] is None:
        study["estimator"] = plain(sem_d.get("estimator", getattr(sem, "estimator", None)))
        study["levels"] = [row.get("level") for row in doc["invariance"]["fits"]]
    validate_estimates(doc)
    return doc


@cache
def load_schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_estimates(doc: dict) -> None:
    """Raise VaarError naming the most relevant schema violation (path and message)."""
    validator = jsonschema.Draft202012Validator(load_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        message = error.message if len(error.message) <= 200 else error.message[:200] + " …"
        raise VaarError(f"estimates.json does not match its schema at {where}: {message}")
