"""The job store: one SQLite table, so a restarted server still knows every job it accepted.

Only the server process writes it (the R workers report back over their pipe), so one
connection used from the event loop is enough; each statement is a few microseconds.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
INTERRUPTED_REASON = (
    "interrupted: the server stopped while this job was running; submit the data again"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    client TEXT NOT NULL DEFAULT '',
    spec TEXT NOT NULL DEFAULT '{}',
    summary TEXT NOT NULL DEFAULT '{}'
)
"""


@dataclass
class Job:
    id: str
    status: str
    stage: str = ""
    progress: float = 0.0
    error: str | None = None
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    client: str = ""
    spec: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED


def new_job_id() -> str:
    """Server-generated, random, and safe as a directory name: clients never choose paths."""
    return uuid.uuid4().hex


class JobStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)  # autocommit
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def recover(self) -> tuple[list[str], list[str]]:
        """After a restart: fail the jobs that were running, return (failed ids, queued ids)
        so the queued ones can be queued again in their original order."""
        running = [
            r["id"] for r in self._db.execute("SELECT id FROM jobs WHERE status = ?", (RUNNING,))
        ]
        for job_id in running:
            self.finish(job_id, FAILED, error=INTERRUPTED_REASON)
        queued = [
            r["id"]
            for r in self._db.execute(
                "SELECT id FROM jobs WHERE status = ? ORDER BY created", (QUEUED,)
            )
        ]
        return running, queued

    def add(self, job_id: str, *, client: str, spec: dict) -> Job:
        now = time.time()
        self._db.execute(
            "INSERT INTO jobs (id, status, stage, created, client, spec) VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, QUEUED, "queued", now, client, json.dumps(spec)),
        )
        return self.get(job_id)

    def get(self, job_id: str) -> Job | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        data = dict(row)
        data["spec"] = json.loads(data["spec"])
        data["summary"] = json.loads(data["summary"])
        return Job(**data)

    def start(self, job_id: str) -> bool:
        """Mark a queued job running; False when it is no longer queued (cancelled meanwhile)."""
        cur = self._db.execute(
            "UPDATE jobs SET status = ?, stage = 'starting', started = ? "
            "WHERE id = ? AND status = ?",
            (RUNNING, time.time(), job_id, QUEUED),
        )
        return cur.rowcount == 1

    def set_progress(self, job_id: str, stage: str, progress: float) -> None:
        self._db.execute(
            "UPDATE jobs SET stage = ?, progress = ? WHERE id = ? AND status = ?",
            (stage, max(0.0, min(1.0, progress)), job_id, RUNNING),
        )

    def finish(self, job_id: str, status: str, *, error: str | None = None, summary=None) -> bool:
        """Record the outcome once: a job that already finished (e.g. cancelled) keeps it."""
        assert status in FINISHED
        cur = self._db.execute(
            "UPDATE jobs SET status = ?, stage = ?, progress = CASE WHEN ? = 'done' THEN 1 "
            "ELSE progress END, error = ?, finished = ?, summary = ? "
            "WHERE id = ? AND status IN (?, ?)",
            (
                status,
                status,
                status,
                error,
                time.time(),
                json.dumps(summary or {}),
                job_id,
                QUEUED,
                RUNNING,
            ),
        )
        return cur.rowcount == 1

    def delete(self, job_id: str) -> None:
        self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
        return {r["status"]: r["n"] for r in rows}

    def list(self, limit: int = 100) -> list[Job]:
        rows = self._db.execute("SELECT id FROM jobs ORDER BY created DESC LIMIT ?", (limit,))
        return [self.get(r["id"]) for r in rows.fetchall()]
