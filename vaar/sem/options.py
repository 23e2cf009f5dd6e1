"""Command-line options shared by `vaar sem-fit` and `vaar analyze --model`: which items are
ordinal (`--ordered`) and what happens to degenerate items (`--degenerate`), checked in Python
before any data is read or R started."""

from __future__ import annotations

import re

import click

from vaar.errors import VaarError
from vaar.invariance import (
    CONTINUOUS_ESTIMATORS,
    DEGENERATE,
    INFORMATION,
    INFORMATION_HELP,
    ORDINAL_ESTIMATORS,
)

ALL = "all"
NAME = re.compile(r"^[A-Za-z.][A-Za-z0-9._]*$")  # an R name, as lavaan's observed variables

ordered_option = click.option(
    "--ordered",
    metavar="ITEMS",
    help=f"Treat items as ordinal (WLSMV, the ordinal ladder): '{ALL}' or a comma list of "
    "observed variables (the default estimator becomes WLSMV).",
)
degenerate_option = click.option(
    "--degenerate",
    type=click.Choice(DEGENERATE),
    help="What to do with an item without variance (or, ordinal, with empty categories) in "
    "some group: drop it in every group (drop_items, the default), exclude that group, or "
    "fail. A group whose answers carry no information at all is always left out.",
)
information_option = click.option(
    "--information",
    type=click.Choice(INFORMATION),
    help=INFORMATION_HELP + " (docs/sem.md).",
)


def parse_ordered(text: str | None) -> bool | list[str]:
    """`--ordered` as fit_ladder takes it: False (none), True ('all') or the listed names."""
    if text is None:
        return False
    if text.strip() == ALL:
        return True
    names = [name.strip() for name in text.split(",")]
    bad = [name for name in names if not NAME.match(name)]
    if not names or bad:
        shown = ", ".join(repr(b) for b in bad) if bad else repr(text)
        raise VaarError(
            f"--ordered: {shown} is not a variable name (give '{ALL}' or names like x1,x2)"
        )
    return list(dict.fromkeys(names))


def check_estimator(estimator: str | None, ordered: bool | list[str]) -> None:
    """WLSMV is for ordinal items: asked without any, it is an error naming the fix."""
    if estimator in ORDINAL_ESTIMATORS and not ordered:
        raise VaarError(
            f"--estimator {estimator} fits ordinal items: mark them with --ordered {ALL} or "
            "--ordered ITEM,ITEM (or use ML/MLR for continuous items)"
        )
    if estimator in CONTINUOUS_ESTIMATORS and ordered:
        raise VaarError(
            f"--estimator {estimator} fits continuous items, but --ordered marks ordinal ones: "
            "use --estimator WLSMV (the default with --ordered)"
        )
