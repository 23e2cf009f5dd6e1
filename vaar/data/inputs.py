"""What `vaar analyze` reads: the studies in the files and folders a user points at, and the
tables, config and instruments of each one.

An input is a collection store (.sqlite), an exported long or wide table (.csv/.parquet), a
study file (.toml), a study folder (a study .toml with its store or export), or a folder of
those (batch). Each study becomes one `Job` whose data are loaded only when it runs
(`load_job`), so a broken study fails on its own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from vaar.collection.store import STORE_FILE, Store, stored_study_name
from vaar.errors import VaarError

if TYPE_CHECKING:
    from vaar.collection.summary import CollectionSummary
    from vaar.config import Study

STORE_SUFFIXES = {".sqlite", ".sqlite3", ".db"}
TABLE_SUFFIXES = {".csv", ".parquet", ".pq"}


@dataclass
class Job:
    """One study to analyse: a name, where its data come from, and its config if known."""

    name: str
    source: Path
    study_file: Path | None = None  # a study .toml
    data_file: Path | None = None  # a store or table; None = the study's own store


@dataclass
class Loaded:
    """One job's inputs: the study (None for a bare table), its tables and instruments, and
    the collection summary a store keeps (None for a table)."""

    study: Study | None
    long: pd.DataFrame | None
    wide: pd.DataFrame
    instruments: list
    collection: CollectionSummary | None = None


# -- finding studies ---------------------------------------------------------------------------


def _is_store(path: Path) -> bool:
    return path.suffix.lower() in STORE_SUFFIXES


def _data_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in STORE_SUFFIXES | TABLE_SUFFIXES
    )


def _study_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.toml") if p.is_file())


def _stores(folder: Path) -> list[Path]:
    return [p for p in _data_files(folder) if _is_store(p)]


def _study_name(study_file: Path) -> str:
    """The `name` field of a study file, read leniently (full validation happens in the job)."""
    from vaar.config import NAME_PATTERN
    from vaar.files import read_toml

    try:
        name = read_toml(study_file).get("name")
    except VaarError:
        name = None
    return name if isinstance(name, str) and re.match(NAME_PATTERN, name) else study_file.stem


def _file_job(path: Path) -> Job:
    suffix = path.suffix.lower()
    if suffix == ".toml":
        return Job(_study_name(path), path, path, None)
    if suffix in STORE_SUFFIXES:
        return Job(stored_study_name(path) or path.stem, path, None, path)
    if suffix in TABLE_SUFFIXES:
        return Job(path.stem, path, None, path)
    raise VaarError(f"{path}: not a study (.toml), store (.sqlite) or table (.csv/.parquet)")


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
        return Job(stored_study_name(stores[0]) or folder.name, folder, None, stores[0])
    if len(data) == 1:
        return Job(folder.name, folder, None, data[0])
    return None


def _sub(folder: Path) -> Job | None:
    """A sub-folder of a batch folder; a broken one still becomes a job (that will fail)."""
    try:
        return _folder_job(folder)
    except VaarError:
        return Job(folder.name, folder, None, None)


def _batch_jobs(folder: Path) -> list[Job]:
    """A study folder is one job; a folder of study folders (and data files) is a batch."""
    subs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    job = _folder_job(folder) if _study_files(folder) or _stores(folder) or not subs else None
    if job is not None:
        return [job]
    found = [j for sub in subs if (j := _sub(sub))]
    found += [_file_job(f) for f in _data_files(folder)]
    if not found:
        raise VaarError(
            f"{folder}: no study found (expected a study .toml, a .sqlite store, a .csv or "
            ".parquet table, or sub-folders holding them)"
        )
    return found


def _unique_names(jobs: list[Job]) -> list[Job]:
    seen: dict[str, int] = {}
    for job in jobs:
        n = seen.get(job.name, 0)
        seen[job.name] = n + 1
        if n:
            job.name = f"{job.name}-{n + 1}"
    return jobs


def find_jobs(paths: list[Path]) -> list[Job]:
    """The studies in the given inputs; VaarError if an input holds none."""
    jobs: list[Job] = []
    for path in paths:
        if not path.exists():
            raise VaarError(f"{path}: no such file or folder")
        jobs += [_file_job(path)] if path.is_file() else _batch_jobs(path)
    return _unique_names(jobs)


# -- loading one study -------------------------------------------------------------------------


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


def store_tables(path: Path):
    """Long and wide tables, the study config and a collection summary from a store."""
    from vaar.collection.store import condition_name
    from vaar.collection.summary import CollectionSummary
    from vaar.config import parse_study
    from vaar.data import VARIANT, long_frame, wide_table

    store = Store(path, readonly=True)
    try:
        long = long_frame(store.answers())
        config = store.meta("config")
        usage, answers = store.usage_by_model(), store.answer_counts()
    finally:
        store.close()
    if long.empty:
        raise VaarError(f"{path}: the store holds no answers yet (run the study first)")
    study = parse_study(json.loads(config), source=f"{path} (stored config)") if config else None
    wide = wide_table(long)
    keys = wide["model"]
    if VARIANT in wide.columns:  # a multiverse: one summary row per condition
        keys = pd.Series(map(condition_name, keys, wide[VARIANT]), index=wide.index)
    sessions = wide.groupby(keys, sort=False).size()
    collection = CollectionSummary(
        path,
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


def _data_file(job: Job, study) -> Path:
    """The store or table a job analyses: its own, else the study's store."""
    if job.data_file is not None:
        return job.data_file
    if study is None:
        raise VaarError(f"{job.source}: no study file, store or table found in this folder")
    for candidate in (job.study_file.parent / STORE_FILE, study.out_path / STORE_FILE):
        if candidate.exists():
            return candidate
    raise VaarError(
        f"{job.source}: no answers for study {study.name!r} (no {STORE_FILE} next "
        f"to the study file or in {study.out_path}); run it with `vaar run` first"
    )


def load_job(job: Job) -> Loaded:
    """The study, tables, instruments and collection summary of one job."""
    from vaar.config import load_study
    from vaar.data import ID_COLUMNS
    from vaar.instruments import load_instruments

    # an analysis needs the study's design, not its personas or output folder on this machine
    study = load_study(job.study_file, check_files=False) if job.study_file else None
    data = _data_file(job, study)
    collection = None
    if _is_store(data):
        long, wide, stored, collection = store_tables(data)
        study = study or stored
        instruments = load_instruments(study.instruments) if study else None
    else:
        instruments = load_instruments(study.instruments) if study else None
        long, wide = _table(data, instruments)
    if instruments is None:
        items = [c for c in wide.columns if c not in ID_COLUMNS]
        instruments = instruments_for_items(items)
        if not _is_store(data):  # a table's answers against the scales
            long, wide = _table(data, instruments)  # of its instruments, now they are known
    return Loaded(study, long, wide, instruments, collection)


def load_model_table(job: Job, group: str) -> pd.DataFrame:
    """The table a user's own lavaan model is fitted to: any CSV/Parquet table (no vaar column
    contract applies) that has the group column."""
    from vaar.data import read_frame

    if job.data_file is None or job.data_file.suffix.lower() not in TABLE_SUFFIXES:
        raise VaarError(f"{job.source}: --model needs a .csv or .parquet table")
    data = read_frame(job.data_file)
    if group not in data.columns:
        columns = ", ".join(map(str, data.columns))
        raise VaarError(f"{job.data_file}: no group column {group!r} (columns: {columns})")
    return data
