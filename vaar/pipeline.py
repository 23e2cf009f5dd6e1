"""The one orchestrator: collect -> tables -> lavaan -> VAAR -> report.

Each stage is a call into its own package (inputs are found and loaded by vaar.data, reports
written by vaar.report); this module only sequences the stages, times them and records one
provenance record, so `vaar run`, `vaar analyze` (one study or a batch, vaar's model or the
user's own) and the service's jobs share one path.
"""

from __future__ import annotations

import asyncio
import hashlib
import platform
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from vaar import __version__
from vaar.collection.summary import CollectionSummary
from vaar.config import AnalysisSpec, Study
from vaar.data.inputs import Job
from vaar.errors import VaarError
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
    """sha256 of the analysed table as CSV: the same bytes the reproduction bundle holds."""
    return hashlib.sha256(wide.to_csv(index=False).encode()).hexdigest()


def provenance(study: Study | None, instruments: list, sem, data: pd.DataFrame, **extra) -> dict:
    """What every report records about how it was made: versions, seed, config, the hashes of
    the instruments and of the analysed table, and `extra` (e.g. a user model's group column)."""
    return {
        "vaar_version": __version__,
        "python": platform.python_version(),
        "r": dict(getattr(sem, "versions", {}) or {}),
        "seed": study.seed if study else None,
        "config": study.model_dump(mode="json") if study else None,
        "instrument_hashes": {i.id: i.content_hash for i in instruments},
        "data_sha256": data_hash(data),
        **extra,
    }


# -- analysis ----------------------------------------------------------------------------------


def _fit(
    scored: pd.DataFrame,
    syntax: str,
    analysis: AnalysisSpec,
    timings: dict,
    echo: Echo,
    answers: pd.DataFrame | None = None,
):
    from vaar.sem import fit_ladder

    with _stage("lavaan multi-group SEM", timings, echo):
        return fit_ladder(
            scored, syntax, group="model", answers=answers, **analysis.ladder_options()
        )


def _align(sem, model, reference, analysis: AnalysisSpec, seed: int, echo: Echo):
    from vaar.alignment import align

    return align(
        sem,
        model.paths,
        reference,
        level=analysis.vaar_level,
        standardized=analysis.standardized,
        alpha=analysis.alpha,
        human_group=analysis.human_group,
        bootstrap=analysis.bootstrap or None,
        interval_method=analysis.interval_method,
        evidence=analysis.evidence,
        scheduler=analysis.scheduler,
        workers=analysis.workers,
        seed=seed,
        progress=_draw_progress(echo) if analysis.bootstrap else None,
    )


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
    from vaar.alignment import load_reference, profiles
    from vaar.data import score_items
    from vaar.sem import build_vaar_model
    from vaar.sem.degenerate import check_unanswered

    analysis = analysis or (study.analysis if study else AnalysisSpec())
    timings = {} if timings is None else timings
    reference = load_reference(analysis.reference)  # a bad file fails now, not after the fit
    model = build_vaar_model(instruments, privacy=analysis.privacy_factors)
    scored = score_items(wide, instruments)
    note = check_unanswered(scored, model.items, analysis.degenerate)
    if note:
        echo(f"[vaar] degenerate: {note}")
    sem = _fit(scored, model.syntax, analysis, timings, echo, answers=wide)
    with _stage("VAAR and profiles", timings, echo):
        alignment = _align(sem, model, reference, analysis, study.seed if study else 0, echo)
        profile = profiles(long, wide, instruments)
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
        provenance=provenance(study, instruments, sem, wide),
        timings=timings,
    )


def analyze_multiverse(
    study: Study | None, wide: pd.DataFrame, instruments: list, factors: dict, *,
    long: pd.DataFrame | None = None, echo: Echo = print, timings: dict | None = None,
    analysis: AnalysisSpec | None = None, **how,
) -> StudyResult:  # fmt: skip
    """A multiverse study (`wide` has a `variant` column; `factors`: variant -> {factor:
    level}): each variant analysed by analyze_tables on its own sessions (a variant that cannot
    be analysed is a finding, not a crash), then compared across variants by vaar.multiverse.
    The result is the first analysable variant's, with the comparison as `multiverse`."""
    from vaar.data import VARIANT, score_items
    from vaar.multiverse.analysis import summarize
    from vaar.multiverse.order import order_invariance
    from vaar.sem import build_vaar_model

    analysis = analysis or (study.analysis if study else AnalysisSpec())
    timings = {} if timings is None else timings
    results, failures = {}, {}
    for variant in factors:
        rows, stages = wide[VARIANT] == variant, {}
        mine = None if long is None else long[long["session"].isin(wide.loc[rows, "session"])]
        echo(f"[vaar] variant {variant}: {int(rows.sum())} sessions")
        try:
            results[variant] = analyze_tables(
                study, wide[rows].drop(columns=VARIANT), instruments, long=mine, echo=echo,
                timings=stages, analysis=analysis, **how,
            )  # fmt: skip
        except VaarError as exc:
            failures[variant] = str(exc)
            echo(f"[vaar] variant {variant} not analysed: {exc}")
        timings.update({f"variant {variant}: {stage}": t for stage, t in stages.items()})
    if not results:
        raise VaarError(f"no variant of the multiverse could be analysed: {failures}")
    scored = score_items(wide, instruments)
    syntax = build_vaar_model(instruments, privacy=analysis.privacy_factors).syntax
    with _stage("multiverse: block-order ladder", timings, echo):
        order = order_invariance(scored, wide, syntax, factors, analysis, echo)
    with _stage("multiverse: stability and verdicts", timings, echo):
        alignments = {v: r.alignment for v, r in results.items()}
        multiverse = summarize(alignments, factors, scored=scored, instruments=instruments,
                               failures=failures, order=order, alpha=analysis.alpha)  # fmt: skip
    shown = results[next(v for v in factors if v in results)]
    shown.provenance["data_sha256"] = data_hash(wide)
    return replace(shown, multiverse=multiverse, timings=timings)


def analyze_study(study: Study | None, wide: pd.DataFrame, instruments: list, **how) -> StudyResult:
    """analyze_tables, or analyze_multiverse when the sessions carry a variant: the variants
    described by their factor levels (vaar.multiverse.variant_factors), in the study's order;
    a variant the study does not describe (or a bare table's) only by its name."""
    from vaar.data import VARIANT

    if VARIANT not in wide.columns:
        return analyze_tables(study, wide, instruments, **how)
    from vaar.multiverse import variant_factors

    described = variant_factors(study) if study is not None else {}
    present = list(dict.fromkeys(wide[VARIANT].astype(str)))
    ordered = [v for v in described if v in present] + [v for v in present if v not in described]
    factors = {v: described.get(v, {VARIANT: v}) for v in ordered}
    return analyze_multiverse(study, wide, instruments, factors, **how)


def analyze_model(
    data: pd.DataFrame,
    syntax: str,
    group: str,
    *,
    name: str,
    estimator: str | None = None,
    ordered: bool | list[str] = False,
    degenerate: str | None = None,
    information: str | None = None,
    data_file: str | None = None,
    group_label: str | None = None,
    echo: Echo = print,
    timings: dict | None = None,
) -> StudyResult:
    """A user's own lavaan model fitted across the groups of column `group` of any table: SEM
    only, no VAAR. `ordered` and `degenerate` as in fit_ladder (None: its default strategy).
    The provenance names the table (`data_file`) and the group column as the user knows it
    (`group_label`, default `group`)."""
    from vaar.sem import fit_ladder

    timings = {} if timings is None else timings
    how = {"degenerate": degenerate} if degenerate else {}
    how |= {"information": information} if information else {}
    with _stage("lavaan multi-group SEM (your model)", timings, echo):
        sem = fit_ladder(
            data, syntax, group, estimator=estimator, ordered=ordered, equal_paths=True,
            min_groups=2, **how,
        )  # fmt: skip
    source = {"data_file": data_file, "group_column": group_label or group}
    return StudyResult.from_analysis(
        study=None,
        name=name,
        instruments=[],
        collection=None,
        long=None,
        wide=data,
        model=syntax,
        sem=sem,
        provenance=provenance(None, [], sem, data, **source),
        timings=timings,
    )


# -- `vaar run` --------------------------------------------------------------------------------


def run_study(
    study: Study, *, echo: Echo = print, progress: bool = True, workers: int | None = None
) -> Path:
    """`vaar run`: collect (resuming any earlier partial run), analyse, write the report;
    `workers`: the processes that collect (vaar.collection.workers; None: as it picks)."""
    from vaar.collection import collect
    from vaar.collection.store import STORE_FILE
    from vaar.data import long_table, wide_table
    from vaar.instruments import load_instruments
    from vaar.report import write_report

    timings: dict = {}
    out = make_folder(study.out_path, "output_dir")
    store = out / STORE_FILE
    instruments = load_instruments(study.instruments)
    with _stage("collect answers", timings, echo):
        summary = asyncio.run(collect(study, store, progress=progress, workers=workers))
    with _stage("build tables", timings, echo):
        long = long_table(store)
        wide = wide_table(long)
    result = analyze_study(
        study, wide, instruments, long=long, collection=summary, echo=echo, timings=timings
    )
    with _stage("write report", timings, echo):
        return write_report(out, result)


# -- `vaar analyze`: one study or a batch ------------------------------------------------------


@dataclass
class Outcome:
    """How one job of a batch went: its report, or why it failed."""

    name: str
    source: Path
    report: Path | None = None
    error: str | None = None
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)  # models, level, best VAAR for the index

    @property
    def ok(self) -> bool:
        return self.error is None


def analyze_job(
    job: Job,
    *,
    overrides: dict | None = None,
    user_model: tuple[str, str] | None = None,
    echo: Echo = print,
) -> StudyResult:
    """Load one study and analyse it (or fit the user's own model to its table). `overrides`
    are AnalysisSpec fields set on the command line; they win over the study's own settings."""
    from vaar.data.inputs import load_job, load_model_table

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if user_model is not None:
        syntax, group = user_model
        data = load_model_table(job, group)
        return analyze_model(
            data, syntax, group, name=job.name, estimator=overrides.get("estimator"),
            ordered=overrides.get("ordered", False), degenerate=overrides.get("degenerate"),
            information=overrides.get("information"),
            echo=echo, data_file=str(job.data_file),
        )  # fmt: skip
    loaded = load_job(job)
    analysis = None
    if overrides:
        base = loaded.study.analysis if loaded.study is not None else AnalysisSpec()
        analysis = AnalysisSpec.model_validate({**base.model_dump(), **overrides})
    return analyze_study(
        loaded.study,
        loaded.wide,
        loaded.instruments,
        long=loaded.long,
        collection=loaded.collection,
        name=job.name,
        echo=echo,
        analysis=analysis,
    )


def _run_job(job: Job, out_root: Path, outcome: Outcome, echo: Echo, **how) -> None:
    from vaar.report import write_report
    from vaar.report.index import index_summary

    result = analyze_job(job, echo=echo, **how)
    outcome.report = write_report(out_root / job.name, result)
    outcome.summary = index_summary(outcome.report.parent)


def run_jobs(
    jobs: list[Job],
    out_root: Path,
    *,
    overrides: dict | None = None,
    user_model: tuple[str, str] | None = None,
    echo: Echo = print,
) -> list[Outcome]:
    """Analyse and report every job; a failure is recorded and the next job runs."""
    outcomes = []
    for k, job in enumerate(jobs, 1):
        echo(f"[{k}/{len(jobs)}] {job.name}: {job.source}")
        start = time.perf_counter()
        outcome = Outcome(job.name, job.source)
        try:
            _run_job(job, out_root, outcome, echo, overrides=overrides, user_model=user_model)
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
