"""Write one study's report folder: index.html, estimates.json (+ its schema), CSV tables and the
reproduction bundle. All outputs come from the same estimates document."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from vaar.files import atomic_write, make_folder, write_text
from vaar.report.document import SCHEMA_PATH, build_estimates
from vaar.report.html import render_html

# CSV file name -> where its rows live in the estimates document
CSV_TABLES = {
    "estimates.csv": ("estimates",),
    "fits.csv": ("invariance", "fits"),
    "comparisons.csv": ("invariance", "comparisons"),
    "vaar.csv": ("alignment", "scores"),
    "path_evidence.csv": ("alignment", "path_evidence"),
    "profiles.csv": ("profiles", "table"),
    "profile_stability.csv": ("profiles", "stability"),
    "reliability.csv": ("reliability",),
    "collection.csv": ("collection", "models"),
    "multiverse_vaar.csv": ("multiverse", "vaar"),
    "multiverse_paths.csv": ("multiverse", "paths"),
    "multiverse_flips.csv": ("multiverse", "flips"),
    "multiverse_stability.csv": ("multiverse", "stability"),
    "multiverse_verdicts.csv": ("multiverse", "verdicts"),
    "multiverse_order.csv": ("multiverse", "order"),
    "multiverse_order_paths.csv": ("multiverse", "order_paths"),
}


def _rows(doc: dict, keys: tuple[str, ...]) -> list[dict]:
    value = doc
    for key in keys:
        value = (value or {}).get(key)
    return value if isinstance(value, list) else []


def write_tables(out_dir: Path, doc: dict) -> list[Path]:
    """One CSV per non-empty table of the document; nested values are written as JSON text."""
    written = []
    for name, keys in CSV_TABLES.items():
        rows = _rows(doc, keys)
        if not rows:
            continue
        frame = pd.DataFrame(rows)
        for column in frame.columns:
            if frame[column].map(lambda v: isinstance(v, dict | list)).any():
                frame[column] = frame[column].map(
                    lambda v: json.dumps(v) if isinstance(v, dict | list) else v
                )
        path = out_dir / name
        with atomic_write(path, "table") as tmp:
            frame.to_csv(tmp, index=False)
        written.append(path)
    return written


def write_bundle(out_dir: Path, result) -> Path:
    """The reproduction bundle (data, model, arguments, R script) from vaar.sem, in
    `out_dir/bundle`; returns its analysis.R."""
    from vaar.sem import write_bundle as sem_write_bundle

    return sem_write_bundle(out_dir / "bundle", result)


def write_report(out_dir: str | Path, result) -> Path:
    """Write the whole report folder for one analysed study and return the index.html path."""
    out_dir = make_folder(out_dir, "report folder")
    doc = build_estimates(result)
    write_text(out_dir / "estimates.json", json.dumps(doc, indent=2, ensure_ascii=False))
    with atomic_write(out_dir / SCHEMA_PATH.name) as tmp:
        shutil.copyfile(SCHEMA_PATH, tmp)
    write_tables(out_dir, doc)
    write_bundle(out_dir, result)
    index = out_dir / "index.html"
    write_text(index, render_html(doc, result.sem.lavaan_output), "report")
    return index
