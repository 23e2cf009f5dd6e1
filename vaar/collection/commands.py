"""`vaar collect`; vaar/cli.py registers COMMANDS (`vaar export` is in vaar.data)."""

from __future__ import annotations

import asyncio
import math
import sys

import click

from vaar.collection.store import STORE_FILE
from vaar.config import load_study
from vaar.errors import VaarError

EXIT_INCOMPLETE = 3  # some sessions are not done: rerun (or --retry-errors) to finish them
WORKERS_HELP = (
    "Processes that ask the sessions, all writing the one store (default: one per 128 "
    "sessions in flight, at most one per CPU, for live runs of HTTP models; else 1). Not with "
    "--batch or --max-cost."
)


@click.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Estimate calls, tokens and cost; ask nothing.")
@click.option("--prices", type=click.Path(dir_okay=False), help="Price table TOML (USD/Mtok).")
@click.option("--max-cost", type=float, help="Stop cleanly once this much (USD) is spent.")
@click.option("--retry-errors", is_flag=True, help="Re-run sessions that failed earlier.")
@click.option("--store", type=click.Path(), help=f"Default: <output_dir>/{STORE_FILE}")
@click.option(
    "--cache",
    type=click.Path(),
    help="Reply cache (SQLite) shared across studies; identical requests are not paid twice.",
)
@click.option("--no-progress", is_flag=True, help="No live display or progress lines.")
@click.option(
    "--batch",
    is_flag=True,
    help="Send each model's turns as provider batches, in waves (OpenAI, Anthropic; about "
    "half price, results within 24 h); a rerun resumes the batches in flight.",
)
@click.option(
    "--batch-poll",
    type=click.FloatRange(min=0.001),
    help="Seconds between polls of a batch in flight (default 30).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help=WORKERS_HELP,
)
def collect(
    study_file, dry_run, prices, max_cost, retry_errors, store, cache, no_progress, batch,
    batch_poll, workers,
):  # fmt: skip
    """Collect answers for a study (resuming where an earlier run stopped).

    \b
    Exit status: 0 when every session is done, 3 while any is incomplete (the summary says
    why: rerun to resume, or --retry-errors for failed sessions), 2 on bad input or when the
    store cannot be used (disk full, locked, in use by another vaar): every turn stored so far
    is kept, and a rerun resumes from them.
    """
    from vaar.collection.cost import estimate, load_prices
    from vaar.collection.runner import collect as run_collect
    from vaar.instruments import load_instruments

    if max_cost is not None and not (math.isfinite(max_cost) and max_cost >= 0):
        raise VaarError(f"--max-cost must be an amount in USD of 0 or more, got {max_cost}")
    study = load_study(study_file)
    price_table = load_prices(prices)
    if dry_run:
        rows = estimate(study, load_instruments(study.instruments), price_table)
        for line in dry_run_lines(rows):
            click.echo(line)
        return
    try:
        summary = asyncio.run(
            run_collect(
                study,
                store,
                progress=not no_progress,
                retry_errors=retry_errors,
                max_cost=max_cost,
                prices=price_table,
                cache_path=cache,
                batch=batch,
                batch_poll=batch_poll,
                workers=workers,
            )
        )
    except KeyboardInterrupt:
        click.echo("interrupted: every completed turn is stored; rerun to resume", err=True)
        sys.exit(130)
    for line in summary.lines():
        click.echo(line)
    processes = f", {summary.workers} worker processes" if summary.workers > 1 else ""
    click.echo(f"store: {summary.store_path} ({summary.elapsed:.1f} s{processes})")
    if not summary.complete:
        sys.exit(EXIT_INCOMPLETE)


def dry_run_lines(rows) -> list[str]:
    """The dry run's lines: one per model; for a multiverse study the grid, one line per variant
    (its models summed) and the total."""
    from vaar.collection.cost import WAYS, Estimate

    variants = list(dict.fromkeys(r.variant for r in rows if r.variant))
    if variants:
        models = len(rows) // len(variants)
        lines = [f"grid: {models} models x {len(variants)} variants = {len(rows)} conditions"]
        lines += [Estimate.total(v, [r for r in rows if r.variant == v]).line() for v in variants]
        return [*lines, Estimate.total("total", rows).line() + " (before re-asks and retries)"]
    lines = [row.line() for row in rows]
    priced = [r.costs for r in rows if r.costs is not None]
    if priced:
        totals = ", ".join(f"{way} ${sum(c[way] for c in priced):,.4f}" for way in WAYS)
        lines.append(f"total: {totals} (before re-asks and retries)")
    return lines


COMMANDS = [collect]
