"""`vaar export`; vaar/cli.py registers COMMANDS."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("source", type=click.Path())  # not a store: vaar.collection.store says why
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
def export(source, out_dir):
    """Write long + wide tables (CSV and Parquet) and transcripts (JSONL) of a collection.

    SOURCE is a study TOML file (its output_dir's store) or a collection.sqlite file.
    """
    from vaar.collection.store import STORE_FILE
    from vaar.config import load_study
    from vaar.data.export import export_store

    path = Path(source)
    store = load_study(path).out_path / STORE_FILE if path.suffix == ".toml" else path
    for written in export_store(store, out_dir):
        click.echo(str(written))


COMMANDS = [export]
