"""`vaar instruments list|show|validate`: see what each questionnaire asks, where its wording
came from, and check a user's own instrument file before a study uses it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import click

from vaar.instruments import Instrument, list_instruments, load_instrument

OWN_MARKER = "(vaar's own)"
WIDTH = 100


def _scale(instrument: Instrument) -> str:
    return f"{instrument.scale_min}-{instrument.scale_max}"


def _wrapped(label: str, text: str) -> str:
    return textwrap.fill(
        " ".join(text.split()),
        WIDTH,
        initial_indent=f"{label:<14}",
        subsequent_indent=" " * 14,
    )


@click.group("instruments")
def instruments_group():
    """The questionnaires: list them, show one, validate your own file."""


@instruments_group.command("list")
def list_command():
    """One line per shipped instrument: id, title, items, scale, role, short hash."""
    rows = [
        (
            i.id,
            i.title,
            str(len(i.items)),
            _scale(i),
            i.role,
            i.content_hash[:12],
            OWN_MARKER if i.vaar_own else "",
        )
        for i in list_instruments()
    ]
    header = ("id", "title", "items", "scale", "role", "hash", "")
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@instruments_group.command("show")
@click.argument("instrument")
def show_command(instrument):
    """Everything about one instrument (an id from `vaar instruments list`, or a .toml path)."""
    click.echo(describe(load_instrument(instrument)))


@instruments_group.command("validate")
@click.argument("path", type=click.Path(dir_okay=False))
def validate_command(path):
    """Check an instrument TOML file of your own; prints what is wrong, field by field."""
    instrument = load_instrument(Path(path))
    own = f" {OWN_MARKER}" if instrument.vaar_own else ""
    click.echo(
        f"{path}: ok — {instrument.id!r}{own}, {len(instrument.items)} item(s), scale "
        f"{_scale(instrument)}, role {instrument.role}, factors {', '.join(instrument.factors)}, "
        f"hash {instrument.content_hash}"
    )


def describe(instrument: Instrument) -> str:
    """Plain-text description of an instrument, as `vaar instruments show` prints it."""
    title = f"{instrument.title} [{instrument.id}]"
    if instrument.vaar_own:
        title += (
            f" {OWN_MARKER}: written by the vaar project, not a published instrument "
            "and not the paper's"
        )
    lines = [
        textwrap.fill(title, WIDTH),
        "",
        _wrapped("role:", instrument.role),
        _wrapped("factors:", ", ".join(instrument.factors)),
        _wrapped("citation:", instrument.citation),
        _wrapped("provenance:", instrument.provenance),
        _wrapped("instructions:", instrument.instructions),
        _wrapped("hash:", instrument.content_hash),
        "",
        "options:",
    ]
    lines += [f"  {o.value} = {o.label}" for o in instrument.options]
    lines += ["", "items:"]
    id_width = max(len(i.id) for i in instrument.items)
    for item in instrument.items:
        keyed = "R" if item.reverse else " "
        prefix = f"  {item.id:<{id_width}}  {keyed}  {item.factor}  "
        lines.append(
            textwrap.fill(
                item.text, WIDTH, initial_indent=prefix, subsequent_indent=" " * len(prefix)
            )
        )
    lines += ["", "R = reverse-keyed: scored as scale_min + scale_max - raw."]
    return "\n".join(lines)


COMMANDS = [instruments_group]
