"""What runs inside an R worker process (never in the server): warm-up, the lavaan syntax
check, and one analysis job. Each function takes `progress(stage, fraction)` from the worker.

A job reads only its own directory (`jobs/<server-generated id>/`): the uploaded table, the
model or study text from the spec, and writes `report/` there.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd

from vaar.errors import VaarError

INPUT_FILE = "input.csv"
REPORT_DIR = "report"
WARM_UP_MODEL = "f =~ a + b + c"


def warm_up() -> None:
    """Start R, load lavaan and vaar's R functions once, so the first job does not pay for it."""
    from vaar.sem import observed_variables

    observed_variables(WARM_UP_MODEL)


def check_model(progress=None, *, syntax: str) -> list[str]:
    """Parse a lavaan model with lavaan itself; return its observed variable names."""
    from vaar.sem import observed_variables

    return observed_variables(syntax)


def read_input(job_dir: Path, spec: dict) -> pd.DataFrame:
    return pd.read_csv(job_dir / INPUT_FILE, dtype={spec["group"]: str})


def run_job(progress, *, job_dir: str, spec: dict) -> dict:
    """Analyse one upload and write its report; return a small JSON summary for the job row."""
    from vaar.pipeline import analyze_model
    from vaar.report import write_report

    job_dir = Path(job_dir)
    started = time.perf_counter()
    progress("reading data", 0.05)
    table = read_input(job_dir, spec)
    # reports label groups as models: the group column is called "model" from here on
    table = table.rename(columns={spec["group"]: "model"})
    if spec["kind"] == "model":
        progress("fitting the lavaan model", 0.2)
        result = analyze_model(
            table, spec["model"], "model", name=_name(spec), data_file=spec["filename"],
            group_label=spec["group"], echo=_quiet,
        )  # fmt: skip
    else:
        progress("fitting the multi-group SEM and scoring VAAR", 0.2)
        result = _analyze_vaar(table, spec)
    progress("writing the report", 0.85)
    write_report(job_dir / REPORT_DIR, result)
    return summarize(result, table, time.perf_counter() - started)


def _analyze_vaar(wide: pd.DataFrame, spec: dict):
    """vaar's model for the instruments of an uploaded study config, or the ones detected."""
    import tomllib

    from vaar.config import parse_study
    from vaar.instruments import load_instruments
    from vaar.pipeline import analyze_tables

    study = None
    if spec["kind"] == "study":
        study = parse_study(tomllib.loads(spec["study"]), source="study")
    instruments = load_instruments(study.instruments if study else spec["instruments"])
    if "session" not in wide.columns:
        wide.insert(1, "session", [f"r{i + 1}" for i in range(len(wide))])
    name = study.name if study else _name(spec)  # a study config names its analysis
    return analyze_tables(study, wide, instruments, name=name, echo=_quiet)


def _quiet(_line: str) -> None:
    pass


def _name(spec: dict) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", spec["filename"].rsplit(".", 1)[0]).strip("._-")
    return stem or "analysis"


def summarize(result, table: pd.DataFrame, seconds: float) -> dict:
    """A few headline numbers for GET /api/analyses/{id}; the report holds the rest."""
    sem = result.sem
    fits = getattr(sem, "fits", None)
    summary = {
        "seconds": round(seconds, 3),
        "groups": sorted(map(str, table["model"].unique())),
    }
    if isinstance(fits, pd.DataFrame) and not fits.empty:
        summary["levels"] = [
            {"level": r["level"], "converged": bool(r["converged"])} for _, r in fits.iterrows()
        ]
    decision = getattr(sem, "decision", None)
    if isinstance(decision, dict) and decision.get("level"):
        summary["invariance"] = decision["level"]
    scores = getattr(result.alignment, "scores", None)
    if isinstance(scores, pd.DataFrame) and "vaar_soft" in scores:
        summary["vaar_soft"] = {
            str(r["model"]): (None if pd.isna(r["vaar_soft"]) else float(r["vaar_soft"]))
            for _, r in scores.iterrows()
        }
    return summary


__all__ = ["VaarError", "check_model", "run_job", "warm_up"]
