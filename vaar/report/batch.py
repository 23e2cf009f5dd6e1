"""`vaar analyze`: find the studies in what the user points at, analyse each one, write its
report, and keep going when one fails.

An input is a collection store (.sqlite), an exported long or wide table (.csv/.parquet), a
study file (.toml), a study folder (a study .toml with its store or export), or a folder of
those (batch). Each study becomes one `Job` whose data are loaded only when it runs, so a broken
study fails on its own.
"""

from __future__ import annotations

import json
import sqlite3
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vaar.errors import VaarError
from vaar.files import write_text

STORE_SUFFIXES = {".sqlite", ".sqlite3", ".db"}
TABLE_SUFFIXES = {".csv", ".parquet", ".pq"}
Echo = Callable[[str], None]


@dataclass
class Job:
    """One study to analyse: a name, where its data come from, and its config if known."""

    name: str
    source: Path
    study_file: Path | None = None  # a study .toml
    data_file: Path | None = None  # a store or table; None = the study's own store


@dataclass
class Outcome:
    name: str
    source: Path
    report: Path | None = None
    error: str | None = None
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)  # models, level, best VAAR for the index

    @property
    def ok(self) -> bool:
        return self.error is None


# -- finding studies ---------------------------------------------------------------------------


def _data_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in STORE_SUFFIXES | TABLE_SUFFIXES
    )


def _study_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.toml") if p.is_file())


def _study_name(study_file: Path) -> str:
    """The `name` field of a study file, read leniently (full validation happens in the job)."""
    import re

    from vaar.config import NAME_PATTERN
    from vaar.files import read_toml

    try:
        name = read_toml(study_file).get("name")
    except VaarError:
        name = None
    return name if isinstance(name, str) and re.match(NAME_PATTERN, name) else study_file.stem


def _stores(folder: Path) -> list[Path]:
    return [p for p in _data_files(folder) if p.suffix.lower() in STORE_SUFFIXES]


def _store_name(store: Path, default: str) -> str:
    """The study name a vaar store recorded (its meta table), else `default`."""
    try:
        con = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'study'").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return default
    return str(row[0]) if row and row[0] else default


def _folder_job(folder: Path) -> Job | None:
    """A study folder: one study .toml, plus a store or export next to it (optional); or a
    folder with one store (CSV files beside a store, e.g. a report's tables, are ignored); or
    a folder with one table."""
    studies = _study_files(folder)
    data = _data_files(folder)
    stores = _stores(folder)
    if len(studies) > 1:
        names = ", ".join(p.name for p in studies)
        raise VaarError(f"{folder}: more than one study file ({names}); point at one of them")
    if studies:
        chosen = (stores or data or [None])[0]
        return Job(_study_name(studies[0]), folder, studies[0], chosen)
    if len(stores) == 1:
        return Job(_store_name(stores[0], folder.name), folder, None, stores[0])
    if len(data) == 1:
        return Job(folder.name, folder, None, data[0])
    return None


def find_jobs(paths: list[Path]) -> list[Job]:
    """The studies in the given inputs; VaarError if an input holds none."""
    jobs: list[Job] = []
    for path in paths:
        if not path.exists():
            raise VaarError(f"{path}: no such file or folder")
        if path.is_file():
            suffix = path.suffix.lower()
            if suffix == ".toml":
                jobs.append(Job(_study_name(path), path, path, None))
            elif suffix in STORE_SUFFIXES:
                jobs.append(Job(_store_name(path, path.stem), path, None, path))
            elif suffix in TABLE_SUFFIXES:
                jobs.append(Job(path.stem, path, None, path))
            else:
                raise VaarError(
                    f"{path}: not a study (.toml), store (.sqlite) or table (.csv/.parquet)"
                )
            continue
        subs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        job = _folder_job(path) if _study_files(path) or _stores(path) or not subs else None
        if job is not None:
            jobs.append(job)
            continue
        found = [j for sub in subs if (j := _sub(sub))]
        found += [
            Job(
                _store_name(f, f.stem) if f.suffix.lower() in STORE_SUFFIXES else f.stem, f, None, f
            )
            for f in _data_files(path)
        ]
        if not found:
            raise VaarError(
                f"{path}: no study found (expected a study .toml, a .sqlite store, a .csv or "
                ".parquet table, or sub-folders holding them)"
            )
        jobs.extend(found)
    return _unique_names(jobs)


def _sub(folder: Path) -> Job | None:
    """A sub-folder of a batch folder; a broken one still becomes a job (that will fail)."""
    try:
        return _folder_job(folder)
    except VaarError:
        return Job(folder.name, folder, None, None)


def _unique_names(jobs: list[Job]) -> list[Job]:
    seen: dict[str, int] = {}
    for job in jobs:
        n = seen.get(job.name, 0)
        seen[job.name] = n + 1
        if n:
            job.name = f"{job.name}-{n + 1}"
    return jobs


# -- loading and analysing one study -----------------------------------------------------------


def instruments_for_items(items: list[str]) -> list:
    """The instruments whose items are the table's columns, in order of first appearance."""
    from vaar.instruments import list_instruments

    owner = {item.id: inst for inst in list_instruments() for item in inst.items}
    unknown = [i for i in items if i not in owner]
    if unknown:
        raise VaarError(
            f"column(s) {unknown[:8]} belong to no known instrument; give the study .toml, or "
            "analyse the data with your own lavaan model (--model FILE.lav --group COLUMN)"
        )
    return list({owner[i].id: owner[i] for i in items}.values())


def _store_tables(store: Path):
    """Long and wide tables, the study config and a collection summary from a store."""
    from vaar.collection.store import Store
    from vaar.collection.summary import CollectionSummary
    from vaar.config import parse_study
    from vaar.data import long_table, wide_table

    long = long_table(store)
    if long.empty:
        raise VaarError(f"{store}: the store holds no answers yet (run the study first)")
    meta = Store(store, readonly=True)
    try:
        config = meta.meta("config")
        usage, answers = meta.usage_by_model(), meta.answer_counts()
    finally:
        meta.close()
    study = parse_study(json.loads(config), source=f"{store} (stored config)") if config else None
    wide = wide_table(long)
    sessions = wide.groupby("model", sort=False).size()
    collection = CollectionSummary(
        store,
        models={
            m: {"sessions": int(n), "answers": answers.get(m, {}), **usage.get(m, {})}
            for m, n in sessions.items()
        },
    )
    return long, wide, study, collection


def _table(path: Path, instruments):
    """Long and wide tables from an export; wide-only input has no long table."""
    from vaar.data import LONG_COLUMNS, read_table, wide_table

    frame = read_table(path, instruments)
    if set(LONG_COLUMNS) <= set(frame.columns):
        return frame, wide_table(frame)
    return None, frame


def load_job(job: Job):
    """(study, long, wide, instruments, collection) for one job."""
    from vaar.config import load_study
    from vaar.pipeline import study_instruments

    # an analysis needs the study's design, not its personas or output folder on this machine
    study = load_study(job.study_file, check_files=False) if job.study_file else None
    data = job.data_file
    if data is None and study is not None:
        for candidate in (
            job.study_file.parent / "collection.sqlite",
            study.out_path / "collection.sqlite",
        ):
            if candidate.exists():
                data = candidate
                break
        else:
            raise VaarError(
                f"{job.source}: no answers for study {study.name!r} (no collection.sqlite next "
                f"to the study file or in {study.out_path}); run it with `vaar run` first"
            )
    if data is None:
        raise VaarError(f"{job.source}: no study file, store or table found in this folder")
    collection = None
    if data.suffix.lower() in STORE_SUFFIXES:
        long, wide, stored, collection = _store_tables(data)
        study = study or stored
        instruments = study_instruments(study) if study else None
    else:
        instruments = study_instruments(study) if study else None
        long, wide = _table(data, instruments)
    if instruments is None:
        items = [c for c in wide.columns if c not in ("model", "session")]
        instruments = instruments_for_items(items)
        if data.suffix.lower() not in STORE_SUFFIXES:  # a table's answers against the scales
            long, wide = _table(data, instruments)  # of its instruments, now they are known
    return study, long, wide, instruments, collection


def read_any_table(path: Path) -> pd.DataFrame:
    """Any CSV/Parquet table, for a user's own model (no vaar column contract applies)."""
    from vaar.data import read_frame

    return read_frame(path)


def analyze_user_model(job: Job, syntax: str, group: str, estimator: str, echo: Echo):
    """A StudyResult for a user's own lavaan model on any table: SEM only, no VAAR."""
    from vaar import __version__
    from vaar.pipeline import _stage, data_hash
    from vaar.result import StudyResult
    from vaar.sem import analyze_data

    if job.data_file is None or job.data_file.suffix.lower() not in TABLE_SUFFIXES:
        raise VaarError(f"{job.source}: --model needs a .csv or .parquet table")
    data = read_any_table(job.data_file)
    if group not in data.columns:
        columns = ", ".join(map(str, data.columns))
        raise VaarError(f"{job.data_file}: no group column {group!r} (columns: {columns})")
    timings: dict = {}
    with _stage("lavaan multi-group SEM (your model)", timings, echo):
        sem = analyze_data(data, syntax, group=group, estimator=estimator)
    return StudyResult.from_analysis(
        study=None,
        name=job.name,
        instruments=[],
        collection=None,
        long=None,
        wide=data,
        model=syntax,
        sem=sem,
        alignment=None,
        profiles=None,
        provenance={
            "vaar_version": __version__,
            "r": dict(getattr(sem, "versions", {}) or {}),
            "data_file": str(job.data_file),
            "data_sha256": data_hash(data),
            "group_column": group,
        },
        timings=timings,
    )


def analyze_job(
    job: Job, *, overrides: dict | None = None, user_model: tuple[str, str] | None = None, echo
):
    """Load one study and run the pipeline on it (or the user's own model). `overrides` are
    AnalysisSpec fields set on the command line; they win over the study's own settings."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if user_model is not None:
        syntax, group = user_model
        return analyze_user_model(job, syntax, group, overrides.get("estimator", "MLR"), echo)
    from vaar.config import AnalysisSpec
    from vaar.pipeline import analyze_tables

    study, long, wide, instruments, collection = load_job(job)
    analysis = None
    if overrides:
        base = study.analysis if study is not None else AnalysisSpec()
        analysis = AnalysisSpec.model_validate({**base.model_dump(), **overrides})
    return analyze_tables(
        study,
        wide,
        instruments,
        long=long,
        collection=collection,
        name=job.name,
        echo=echo,
        analysis=analysis,
    )


# -- the batch ---------------------------------------------------------------------------------


def run_jobs(
    jobs: list[Job],
    out_root: Path,
    *,
    overrides: dict | None = None,
    user_model: tuple[str, str] | None = None,
    echo: Echo = print,
) -> list[Outcome]:
    """Analyse and report every job; a failure is recorded and the next job runs."""
    from vaar.report.write import write_report

    outcomes = []
    for k, job in enumerate(jobs, 1):
        echo(f"[{k}/{len(jobs)}] {job.name}: {job.source}")
        start = time.perf_counter()
        outcome = Outcome(job.name, job.source)
        try:
            result = analyze_job(job, overrides=overrides, user_model=user_model, echo=echo)
            outcome.report = write_report(out_root / job.name, result)
            outcome.summary = _index_summary(outcome.report.parent / "estimates.json")
        except VaarError as exc:
            outcome.error = str(exc)
        except Exception as exc:  # an unexpected bug in one study must not stop the batch
            outcome.error = f"{type(exc).__name__}: {exc}"
            echo(traceback.format_exc().rstrip())
        outcome.seconds = time.perf_counter() - start
        status = f"report {outcome.report}" if outcome.ok else f"FAILED: {outcome.error}"
        echo(f"[{k}/{len(jobs)}] {job.name}: {status} ({outcome.seconds:.1f} s)")
        outcomes.append(outcome)
    return outcomes


def _index_summary(estimates_json: Path) -> dict:
    doc = json.loads(estimates_json.read_text(encoding="utf-8"))
    scores = (doc.get("alignment") or {}).get("scores") or []
    scored = [s for s in scores if s.get("vaar_soft") is not None]
    best = max(scored, key=lambda s: s["vaar_soft"], default=None)
    return {
        "models": len(doc["study"]["models"]),
        "level": doc["invariance"]["decision"].get("highest"),
        "best": f"{best['model']}: {best['vaar_soft']:.2f}" if best else None,
    }


def write_index(out_root: Path, outcomes: list[Outcome], title: str = "vaar reports") -> Path:
    """The batch index page: every study with a link to its report, or why it failed."""
    from vaar.report.html import render_index

    entries = []
    for o in outcomes:
        href = o.report.relative_to(out_root).as_posix() if o.report else None
        entry = {"models": None, "level": None, "best": None, **o.summary}
        entries.append({**entry, "name": o.name, "ok": o.ok, "href": href, "error": o.error})
    out_root.mkdir(parents=True, exist_ok=True)
    index = out_root / "index.html"
    write_text(index, render_index(title, entries), "index page")
    return index
