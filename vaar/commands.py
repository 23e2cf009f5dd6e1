"""Commands for the whole chain (vaar.pipeline): check a study file, run a study end to end,
analyse collected answers (`vaar analyze`: stores, exported tables, study folders, batches)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from vaar.collection.commands import WORKERS_HELP
from vaar.config import EVIDENCE_METHODS, INTERVAL_METHODS, VAAR_LEVELS, load_study
from vaar.errors import VaarError
from vaar.invariance import ESTIMATORS
from vaar.sem.options import (
    check_estimator,
    degenerate_option,
    information_option,
    ordered_option,
    parse_ordered,
)

# the overrides that apply to a user's own model
MODEL_OPTIONS = ("estimator", "degenerate", "information")


@click.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
def validate(study_file):
    """Check a study TOML file (and the instruments it names) without running anything."""
    from vaar.instruments import load_instruments

    study = load_study(study_file)
    instruments = load_instruments(study.instruments)
    n_items = sum(len(i.items) for i in instruments)
    click.echo(
        f"{study_file}: ok — study {study.name!r}, {len(study.models)} models x "
        f"{study.sessions_per_model} sessions, {len(instruments)} instruments ({n_items} items), "
        f"history {study.session.history.mode}, output {study.out_path}"
    )


@click.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--no-progress", is_flag=True, help="Plain log lines instead of a live display.")
@click.option("--workers", type=click.IntRange(min=1), help=WORKERS_HELP)
def run(study_file, no_progress, workers):
    """Run a study end to end: collect answers (resuming an earlier run), fit the multi-group
    SEM in lavaan, score VAAR, and write the HTML report.

    \b
    Example (offline, simulated models, no API key):
      vaar run data/examples/demo.toml
    """
    from vaar.pipeline import run_study

    start = time.perf_counter()
    study = load_study(study_file)
    report = run_study(study, echo=click.echo, progress=not no_progress, workers=workers)
    click.echo(f"[vaar] finished in {time.perf_counter() - start:.1f} s")
    click.echo(f"report: {report}")


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    "out_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Folder that receives one report folder per study (<out>/<study>/).",
)
@click.option(
    "--model",
    "model_file",
    type=click.Path(dir_okay=False),
    help="Your own lavaan model (a .lav text file) to fit to any table instead of vaar's model.",
)
@click.option("--group", help="With --model: the column that holds the group of each row.")
@click.option(
    "--estimator",
    type=click.Choice(ESTIMATORS),
    help="Override the study's estimator (default: the study's, else MLR; with --ordered WLSMV).",
)
@ordered_option
@degenerate_option
@information_option
@click.option(
    "--human-group",
    metavar="NAME",
    help="A group of human respondents in the data: its own path signs become the reference "
    "(instead of the built-in human reference), its estimates are shown beside the models'.",
)
@click.option(
    "--level",
    "vaar_level",
    type=click.Choice(VAAR_LEVELS),
    help="Invariance level VAAR scores: configural, or the highest the ladder supports "
    "(default: the study's, else configural).",
)
@click.option(
    "--standardized/--unstandardized",
    default=None,
    help="Report VAAR's path estimates as std.all (the sign evidence stays est / se) "
    "(default: the study's, else unstandardized).",
)
@click.option(
    "--evidence",
    type=click.Choice(EVIDENCE_METHODS),
    help="Sign evidence of each path: its Wald z (default), or its signed likelihood-ratio z "
    "(one refit per model x path; the same whichever indicator identifies a factor).",
)
@click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    metavar="DRAWS",
    help="Bootstrap draws for VAAR intervals (sessions resampled within model, model refitted; "
    "default: the study's, else 0 = none). 200 draws is a reasonable start.",
)
@click.option(
    "--intervals",
    "interval_method",
    type=click.Choice(INTERVAL_METHODS),
    help="Bootstrap interval method: percentile of the refits' VAAR (default), or basic on each "
    "path's z (basic-z) or estimate (basic-est) scale; coverage of each in docs/vaar.md.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Run the bootstrap refits on this Dask scheduler (tcp://host:8786) "
    "instead of local worker processes.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Local worker processes (one R each) for the bootstrap (default: one per core).",
)
@click.option("--title", default="vaar reports", show_default=True, help="Batch index title.")
def analyze(
    inputs, out_root, model_file, group, estimator, ordered, degenerate, information, human_group,
    vaar_level, standardized, evidence, bootstrap, interval_method, scheduler, workers, title,
):  # fmt: skip
    """Analyse collected answers and write reports, without collecting anything.

    Each INPUT is a collection store (.sqlite), an exported long or wide table (.csv or
    .parquet), a study file (.toml), a study folder (a study .toml with its store or export),
    or a folder of such studies (batch). Every study gets <out>/<study>/index.html,
    estimates.json, CSV tables and a reproduction bundle; with more than one study an index
    page <out>/index.html links them all. A failing study is reported and the others still run;
    the exit status is 1 if any study failed.

    \b
    Examples:
      vaar analyze reports/demo/collection.sqlite
      vaar analyze studies/            # every study folder inside
      vaar analyze answers.csv --model my.lav --group llm
      vaar analyze answers.csv --model my.lav --group llm --ordered all
      vaar analyze answers.csv --human-group humans --bootstrap 200
    """
    from vaar.data.inputs import find_jobs
    from vaar.files import folder_problem
    from vaar.pipeline import run_jobs

    ordered = _model_options(model_file, group, estimator, ordered)
    problem = folder_problem(out_root)  # before any study is fitted, not after
    if problem:
        raise VaarError(f"--out: {problem}")
    overrides = {
        "estimator": estimator, "human_group": human_group, "vaar_level": vaar_level,
        "standardized": standardized, "evidence": evidence, "bootstrap": bootstrap,
        "interval_method": interval_method, "scheduler": scheduler, "workers": workers,
        "degenerate": degenerate, "information": information,
    }  # fmt: skip
    user_model = _user_model(model_file, group, ordered, overrides)
    jobs = find_jobs(list(inputs))
    click.echo(f"[vaar] {len(jobs)} stud{'y' if len(jobs) == 1 else 'ies'} to analyse")
    outcomes = run_jobs(jobs, out_root, overrides=overrides, user_model=user_model, echo=click.echo)
    if not _report_outcomes(outcomes, out_root, title):
        sys.exit(1)


def _model_options(model_file, group, estimator, ordered):
    """The checks of --model, --group, --estimator and --ordered that read no file; the
    parsed --ordered."""
    if (model_file is None) != (group is None):
        raise VaarError("--model and --group go together: give both (or neither)")
    ordered = parse_ordered(ordered)
    if model_file:
        check_estimator(estimator, ordered)
    elif ordered:
        raise VaarError(
            "--ordered goes with --model: vaar's own model treats every item as ordinal "
            "under --estimator WLSMV"
        )
    return ordered


def _user_model(model_file, group, ordered, overrides: dict) -> tuple[str, str] | None:
    """(model syntax, group column) for --model, None without; the options that apply to a
    user's own model stay in `overrides`, any other is an error."""
    from vaar.sem.ladder import read_model_file

    if not model_file:
        return None
    user_model = (read_model_file(model_file), group)
    if any(v is not None for k, v in overrides.items() if k not in MODEL_OPTIONS):
        raise VaarError(
            "--model fits your own model without VAAR: only --estimator, --ordered, "
            "--degenerate and --information apply"
        )
    overrides["ordered"] = ordered
    return user_model


def _report_outcomes(outcomes, out_root: Path, title: str) -> bool:
    """The batch index (more than one study) and a line per study; True if all went well."""
    from vaar.report.index import write_index

    if len(outcomes) > 1:
        index = write_index(out_root, outcomes, title)
        click.echo(f"[vaar] index: {index}")
    failed = [o for o in outcomes if not o.ok]
    click.echo(f"[vaar] {len(outcomes) - len(failed)} of {len(outcomes)} studies analysed")
    for outcome in outcomes:
        if outcome.ok:
            click.echo(f"  ok      {outcome.name}: {outcome.report}")
        else:
            click.echo(f"  FAILED  {outcome.name} ({outcome.source}): {outcome.error}", err=True)
    return not failed


COMMANDS = [validate, run, analyze]
