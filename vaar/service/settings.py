"""Settings of `vaar serve`, in one place so the CLI, the app and the tests agree on defaults."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vaar.errors import VaarError

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ServiceSettings:
    data_dir: Path
    host: str = LOOPBACK  # loopback unless told otherwise: the service has no TLS of its own
    port: int = 8080
    workers: int = 1  # R worker processes; each runs one job at a time
    job_timeout: float = 600.0  # seconds a job may run before its worker is killed
    max_upload_bytes: int = 50 * 1024 * 1024
    max_columns: int = 2000  # an upload's columns (vaar's model has 38 items): 413 beyond
    max_rows: int = 200_000  # an upload's data rows: 413 beyond
    token: str | None = None  # bearer token; None = no authentication
    uploads_per_minute: float = 60.0  # per client (remote address)
    requests_per_minute: float = 1200.0  # per client, every /api request
    queue_limit: int = 1000  # queued jobs beyond this get 503: a full queue is not a lost job
    worker_start_timeout: float = 120.0

    def __post_init__(self):
        problems = []
        if self.workers < 1:
            problems.append(f"workers must be at least 1 (got {self.workers})")
        if self.job_timeout <= 0:
            problems.append(f"job timeout must be positive (got {self.job_timeout})")
        if self.max_upload_bytes < 1024:
            problems.append(f"upload limit must be at least 1 KiB (got {self.max_upload_bytes})")
        if self.max_columns < 2 or self.max_rows < 1:
            problems.append(
                f"column and row limits must be at least 2 and 1 (got {self.max_columns}, "
                f"{self.max_rows})"
            )
        if self.uploads_per_minute <= 0 or self.requests_per_minute <= 0:
            problems.append("rate limits must be positive")
        if self.token is not None and len(self.token) < 16:
            problems.append("the bearer token must be at least 16 characters")
        if problems:
            raise VaarError("; ".join(problems))

    @property
    def db_path(self) -> Path:
        return self.data_dir / "jobs.sqlite"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"
