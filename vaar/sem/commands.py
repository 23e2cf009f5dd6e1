"""`vaar sem-fit`: the lavaan ladder on any table, written as SemResult JSON plus the
reproduction bundle (a low-level tool for debugging; `vaar analyze` adds the HTML report)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from vaar.errors import VaarError
from vaar.files import folder_problem, make_folder, write_text
from vaar.invariance import (
    DEFAULT_RULE,
    DEGENERATE,
    ESTIMATORS,
    INFORMATION,
    RULES,
    STUDY_LEVELS,
)
from vaar.sem.options import (
    check_estimator,
    degenerate_option,
    information_option,
    ordered_option,
    parse_ordered,
)


@click.command("sem-fit")
@click.argument("data", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", "model_file", required=True, type=click.Path(dir_okay=False,
              path_type=Path), help="lavaan model syntax file")  # fmt: skip
@click.option("--group", required=True, help="column holding the group labels")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--estimator", default=None, type=click.Choice(ESTIMATORS),
              help="MLR (default), ML, or WLSMV (the default with --ordered)")  # fmt: skip
@ordered_option
@click.option("--levels", default=",".join(STUDY_LEVELS), show_default=True)
@click.option("--rule", default=DEFAULT_RULE, show_default=True, type=click.Choice(RULES))
@click.option("--partial", is_flag=True, help="search for partial invariance (lavTestScore)")
@click.option("--equal-paths/--no-equal-paths", default=True, show_default=True)
@click.option("--bootstrap", default=0, show_default=True, help="bootstrap draws for paths")
@degenerate_option
@information_option
def sem_fit(data, model_file, group, out_dir, estimator, ordered, levels, rule, partial,
            equal_paths, bootstrap, degenerate, information):  # fmt: skip
    """Fit MODEL on DATA (CSV) by GROUP; write sem.json and bundle/ to OUT."""
    from vaar.data import read_frame
    from vaar.sem import fit_ladder, write_bundle
    from vaar.sem.ladder import read_model_file

    ordered = parse_ordered(ordered)
    check_estimator(estimator, ordered)
    problem = folder_problem(out_dir)  # every input is checked before R starts
    if problem:
        raise VaarError(f"--out: {problem}")
    syntax = read_model_file(model_file)  # the allow-list, in Python
    table = read_frame(data)
    result = fit_ladder(
        table, syntax, group, estimator=estimator, ordered=ordered,
        levels=[lv.strip() for lv in levels.split(",") if lv.strip()], rule=rule,
        partial=partial, bootstrap=bootstrap, degenerate=degenerate or DEGENERATE[0],
        equal_paths=equal_paths, min_groups=2, information=information or INFORMATION[0],
    )  # fmt: skip
    make_folder(out_dir, "--out")
    write_text(out_dir / "sem.json", json.dumps(result.to_dict(), indent=1))
    script = write_bundle(out_dir / "bundle", result)
    highest = result.decision.get("highest")
    click.echo(f"highest invariance level under {rule}: {highest}")
    click.echo(f"wrote {out_dir / 'sem.json'} and {script} (run: Rscript {script})")


COMMANDS = [sem_fit]
