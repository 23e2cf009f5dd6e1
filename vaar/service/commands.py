"""`vaar serve`: the analysis service (see docs/service.md)."""

from __future__ import annotations

from pathlib import Path

import click

from vaar.service.settings import LOOPBACK, ServiceSettings


@click.command()
@click.option(
    "--host",
    default=LOOPBACK,
    show_default=True,
    help="Address to bind; 0.0.0.0 exposes the service (use --token then).",
)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--data-dir",
    default="vaar-service",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Job database, uploads and reports.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="R worker processes (each runs one job at a time).",
)
@click.option(
    "--job-timeout",
    default=600.0,
    show_default=True,
    type=float,
    help="Seconds a job may run before its worker is stopped.",
)
@click.option("--max-upload-mb", default=50.0, show_default=True, type=float)
@click.option(
    "--max-columns",
    default=ServiceSettings.max_columns,
    show_default=True,
    type=int,
    help="Columns an uploaded table may have.",
)
@click.option(
    "--max-rows",
    default=ServiceSettings.max_rows,
    show_default=True,
    type=int,
    help="Data rows an uploaded table may have.",
)
@click.option(
    "--token",
    envvar="VAAR_TOKEN",
    default=None,
    help="Require 'Authorization: Bearer TOKEN' (or set VAAR_TOKEN).",
)
@click.option(
    "--uploads-per-minute", default=60.0, show_default=True, type=float, help="Per client address."
)
@click.option(
    "--requests-per-minute",
    default=1200.0,
    show_default=True,
    type=float,
    help="Per client address, all API requests.",
)
def serve(
    host,
    port,
    data_dir,
    workers,
    job_timeout,
    max_upload_mb,
    max_columns,
    max_rows,
    token,
    uploads_per_minute,
    requests_per_minute,
):
    """Serve the analysis API and upload page: POST a CSV to /api/analyses, get the report.

    \b
    Example:
      vaar serve --port 8080          then open http://127.0.0.1:8080/
    """
    from vaar.service.app import run

    settings = ServiceSettings(
        data_dir=data_dir.resolve(),
        host=host,
        port=port,
        workers=workers,
        job_timeout=job_timeout,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_columns=max_columns,
        max_rows=max_rows,
        token=token or None,
        uploads_per_minute=uploads_per_minute,
        requests_per_minute=requests_per_minute,
    )
    run(settings)


COMMANDS = [serve]
