"""The whole chain for one study: collect -> tables -> lavaan -> VAAR -> report.

Each step is a call into its own package; this module only sequences them, times them and
records provenance, so `vaar run`, `vaar analyze` and the service share one path.
"""

from __future__ import annotations

import asyncio
import hashlib
import platform
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from vaar import __version__
from vaar.collection.summary import CollectionSummary
from vaar.config import AnalysisSpec, Study
from vaar.files import make_folder
from vaar.result import StudyResult

Echo = Callable[[str], None]


@contextmanager
def _stage(name: str, timings: dict, echo: Echo):
    """Print a progress line per stage and record its wall time."""
    echo(f"[vaar] {name} ...")
    start = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - start, 3)
    echo(f"[vaar] {name} done in {timings[name]:.1f} s")


def _draw_progress(echo: Echo, every: int = 10):
    """Bootstrap progress for the log: a line every `every` draws and at the end."""

    def report(done: int, total: int) -> None:
        if done % every == 0 or done == total:
            echo(f"[vaar] bootstrap: {done}/{total} draws refitted")

    return report


def data_hash(wide: pd.DataFrame) -> str:
    """sha256 of the analysed wide table as CSV: the same bytes the reproduction bundle holds."""
    return hashlib.sha256(wide.to_csv(index=False).encode()).hexdigest()


def analyze_tables(
    study: Study | None,
    wide: pd.DataFrame,
    instruments: list,
    *,
    long: pd.DataFrame | None = None,
    collection: CollectionSummary | None = None,
    name: str | None = None,
    echo: Echo = print,
    timings: dict | None = None,
    analysis: AnalysisSpec | None = None,
) -> StudyResult:
    """Fit the vaar model to one study's answers and score alignment (no collection, no report).
    `analysis` overrides the study's analysis settings (or the defaults, for a bare table)."""
    from vaar.alignment import align, load_reference, profiles
    from vaar.data import score_items
    from vaar.sem import build_vaar_model, fit_ladder
    from vaar.sem.degenerate import check_unanswered

    analysis = analysis or (study.analysis if study else AnalysisSpec())
    timings = {} if timings is None else timings
    reference = load_reference(analysis.reference)  # a bad file fails now, not after the fit
    model = build_vaar_model(instruments, privacy=analysis.privacy_factors)
    scored = score_items(wide, instruments)
    note = check_unanswered(scored, model.items, analysis.degenerate)
    if note:
        echo(f"[vaar] degenerate: {note}")
    with _stage("lavaan multi-group SEM", timings, echo):
        sem = fit_ladder(
            scored,
            model.syntax,
            group="model",
            estimator=analysis.estimator,
            ordered=analysis.estimator == "WLSMV",
            levels=list(analysis.levels),
            degenerate=analysis.degenerate,
            missing=analysis.missing,
        )
    with _stage("VAAR and profiles", timings, echo):
        alignment = align(
            sem,
            model.paths,
            reference,
            level=analysis.vaar_level,
            standardized=analysis.standardized,
            alpha=analysis.alpha,
            human_group=analysis.human_group,
            bootstrap=analysis.bootstrap or None,
            interval_method=analysis.interval_method,
            scheduler=analysis.scheduler,
            workers=analysis.workers,
            seed=study.seed if study else 0,
            progress=_draw_progress(echo) if analysis.bootstrap else None,
        )
        profile = profiles(long, wide, instruments)
    provenance = {
        "vaar_version": __version__,
        "python": platform.python_version(),
        "r": dict(getattr(sem, "versions", {}) or {}),
        "seed": study.seed if study else None,
        "config": study.model_dump(mode="json") if study else None,
        "instrument_hashes": {i.id: i.content_hash for i in instruments},
        "data_sha256": data_hash(wide),
    }
    return StudyResult.from_analysis(
        study=study,
        name=name or (study.name if study else "analysis"),
        instruments=instruments,
        collection=collection,
        long=long,
        wide=wide,
        model=model,
        sem=sem,
        alignment=alignment,
        profiles=profile,
        provenance=provenance,
        timings=timings,
    )


def study_instruments(study: Study) -> list:
    from vaar.instruments import check_unique_item_ids, load_instrument

    instruments = [load_instrument(i) for i in study.instruments]
    check_unique_item_ids(instruments)  # item ids become wide-table columns: no clashes
    return instruments


def run_study(study: Study, *, echo: Echo = print, progress: bool = True) -> Path:
    """`vaar run`: collect (resuming any earlier partial run), analyse, write the report."""
    from vaar.collection import collect
    from vaar.data import long_table, wide_table
    from vaar.report import write_report

    timings: dict = {}
    out = make_folder(study.out_path, "output_dir")
    store = out / "collection.sqlite"
    instruments = study_instruments(study)
    with _stage("collect answers", timings, echo):
        summary = asyncio.run(collect(study, store, progress=progress))
    with _stage("build tables", timings, echo):
        long = long_table(store)
        wide = wide_table(long)
    result = analyze_tables(
        study,
        wide,
        instruments,
        long=long,
        collection=summary,
        echo=echo,
        timings=timings,
    )
    with _stage("write report", timings, echo):
        report = write_report(out, result)
    return report
