"""`vaar vaar-score`: rescore a finished analysis (its estimates.json) against another human
reference, a human group in the data, another level or scale, without refitting anything.
vaar/cli.py registers COMMANDS."""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from vaar.errors import VaarError
from vaar.invariance import BASELINE


def _fmt(value) -> str:
    return "NA" if value is None or (isinstance(value, float) and math.isnan(value)) else (
        f"{value:.3f}" if isinstance(value, float) else str(value)
    )  # fmt: skip


@click.command("vaar-score")
@click.argument("estimates_json", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--reference", type=click.Path(dir_okay=False), help="Human reference TOML file.")
@click.option("--human-group", help="Take the signs from this group of the data (not scored).")
@click.option(
    "--level", default=BASELINE, show_default=True, help="configural, highest, or a level."
)
@click.option("--standardized", is_flag=True, help="Score std_all instead of est.")
@click.option("--alpha", default=0.05, show_default=True, help="Significance level of VAAR_hard.")
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the full result (as in estimates.json 'alignment') here.",
)
def vaar_score(estimates_json, reference, human_group, level, standardized, alpha, json_out):
    """Rescore VAAR from a report's estimates.json, e.g. against a human group in the data.

    \b
    Examples:
      vaar vaar-score reports/demo/estimates.json
      vaar vaar-score reports/mixed/estimates.json --human-group humans --level highest
    """
    from vaar.alignment import align, load_reference
    from vaar.report.read import read_estimates

    stored = read_estimates(estimates_json)
    if not stored.model.paths:
        raise VaarError(
            f"{estimates_json}: no structural paths under model.paths (a user model has none)"
        )
    ref = None if human_group else load_reference(reference)
    result = align(
        stored.sem, stored.model.paths, ref, level=level, standardized=standardized,
        alpha=alpha, human_group=human_group,
    )  # fmt: skip
    click.echo(f"level: {result.level} ({result.level_reason}); scale: {result.scale_note}")
    click.echo(f"reference: {result.reference.title} [{result.reference.source}]")
    columns = ["model", "vaar_soft", "vaar_hard", "vaar_logloss", "n_paths"]
    rows = [[_fmt(r[c]) for c in columns] for r in result.scores.to_dict("records")]
    widths = [max(len(x) for x in col) for col in zip(columns, *rows, strict=True)]
    for row in [columns, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for row in result.not_estimable.itertuples():
        click.echo(f"not estimable: {row.model}: {row.reason}")
    if result.human_paths is not None:
        for row in result.human_paths.itertuples():
            click.echo(f"human group {human_group}: {row.lhs} ~ {row.rhs} = {row.est:.3f}")
    click.echo("note: " + result.to_dict()["formula_note"])
    if json_out:
        json_out.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
        click.echo(f"written: {json_out}")


COMMANDS = [vaar_score]
