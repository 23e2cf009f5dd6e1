"""`vaar collect` as a real subprocess: killed with SIGKILL at random points and resumed, it ends
with exactly the answers of an uninterrupted run; failed sessions resume with --retry-errors."""

import asyncio
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from fakes.fake_llm import Faults

from vaar.collection import collect
from vaar.config import load_study
from vaar.data import long_table

SESSIONS, CONCURRENCY = 10, 4


def write_study(path: Path, url: str, out: Path, **params) -> Path:
    params = {"timeout": 2, "backoff_initial": 0.01, "backoff_max": 0.05, **params}
    body = ", ".join(f"{k} = {v!r}" for k, v in params.items())
    path.write_text(
        f"""
name = "resume"
seed = 5
sessions_per_model = {SESSIONS}
instruments = ["psa", "aods"]
output_dir = "{out}"

[session.history]
mode = "last_k"
last_k = 4

[[models]]
name = "o"
provider = "openai"
base_url = "{url}"
concurrency = {CONCURRENCY}
params = {{ {body} }}
"""
    )
    return path


def vaar(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-c", "from vaar.cli import main; main()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def stored_turns(store: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
        with contextlib.closing(con):
            return con.execute("SELECT COUNT(*) FROM turns").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def test_kill_9_at_random_points_then_resume_gives_the_uninterrupted_answers(tmp_path, fake_llm):
    reference = fake_llm()
    s = load_study(write_study(tmp_path / "a.toml", reference.base_url, tmp_path / "a"))
    expected = long_table(asyncio.run(collect(s, progress=False)).store_path)

    fake = fake_llm(Faults(latency=0.01))
    study = write_study(tmp_path / "b.toml", fake.base_url, tmp_path / "b")
    store = tmp_path / "b" / "collection.sqlite"
    total = SESSIONS * 28
    rng = random.Random(os.getpid())
    kills = 0
    for target in sorted(rng.sample(range(5, total - 20), 3)):  # kill after `target` turns
        proc = vaar("collect", str(study), "--no-progress")
        while proc.poll() is None and stored_turns(store) < target:
            time.sleep(0.02)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate()
    assert kills >= 1, "the run finished before any kill: slow the fake server down"
    proc = vaar("collect", str(study), "--no-progress")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    assert f"o: {SESSIONS}/{SESSIONS} sessions done" in out

    resumed = long_table(store)
    key = ["session", "item"]
    assert (
        expected.sort_values(key)
        .reset_index(drop=True)
        .equals(resumed.sort_values(key).reset_index(drop=True))
    )
    # completed turns were never asked again: only turns in flight at a kill were re-sent
    turns = sqlite3.connect(store).execute("SELECT COUNT(*) FROM turns").fetchone()[0]
    assert turns == len(resumed)
    assert turns <= fake.counts["requests"] <= turns + kills * CONCURRENCY


def test_failed_sessions_rerun_with_retry_errors(tmp_path, fake_llm):
    fake = fake_llm(Faults(rate_500=0.25, seed=2))
    study = write_study(tmp_path / "s.toml", fake.base_url, tmp_path / "o", max_retries=0)
    s = load_study(study)
    summary = asyncio.run(collect(s, progress=False))
    assert not summary.complete
    assert any("failed (rerun with --retry-errors)" in line for line in summary.incomplete)
    assert any("HTTP 500" in line for line in summary.incomplete)

    fake.faults.rate_500 = 0.0
    again = asyncio.run(collect(s, progress=False))  # failed sessions wait for --retry-errors
    assert again.models["o"]["failed"] == summary.models["o"]["failed"] > 0
    proc = vaar("collect", str(study), "--no-progress")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, out + err  # incomplete: non-zero, with the reason
    assert "failed (rerun with --retry-errors)" in out
    proc = vaar("collect", str(study), "--no-progress", "--retry-errors")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    long = long_table(tmp_path / "o" / "collection.sqlite")
    assert (long["status"] != "error").all() and len(long) == SESSIONS * 28
