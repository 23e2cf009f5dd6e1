"""Commands for the whole chain: check a study file, run a study end to end."""

from __future__ import annotations

import time

import click

from vaar.config import load_study


@click.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
def validate(study_file):
    """Check a study TOML file (and the instruments it names) without running anything."""
    from vaar.pipeline import study_instruments

    study = load_study(study_file)
    instruments = study_instruments(study)
    n_items = sum(len(i.items) for i in instruments)
    click.echo(
        f"{study_file}: ok — study {study.name!r}, {len(study.models)} models x "
        f"{study.sessions_per_model} sessions, {len(instruments)} instruments ({n_items} items), "
        f"history {study.session.history.mode}, output {study.out_path}"
    )


@click.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--no-progress", is_flag=True, help="Plain log lines instead of a live display.")
def run(study_file, no_progress):
    """Run a study end to end: collect answers (resuming an earlier run), fit the multi-group
    SEM in lavaan, score VAAR, and write the HTML report.

    \b
    Example (offline, simulated models, no API key):
      vaar run data/examples/demo.toml
    """
    from vaar.pipeline import run_study

    start = time.perf_counter()
    study = load_study(study_file)
    report = run_study(study, echo=click.echo, progress=not no_progress)
    click.echo(f"[vaar] finished in {time.perf_counter() - start:.1f} s")
    click.echo(f"report: {report}")


COMMANDS = [validate, run]
