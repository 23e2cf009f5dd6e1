"""The whole chain at small scale: simulated models with planted paths -> SQLite store -> tables
-> lavaan through rpy2 -> VAAR -> report. The planted signs are the ground truth."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vaar.config import parse_study
from vaar.data import long_table
from vaar.pipeline import run_study

ROOT = Path(__file__).parents[1]


def small_study(out: Path, sessions: int = 120) -> dict:
    return {
        "name": "small",
        "seed": 7,
        "sessions_per_model": sessions,
        "instruments": ["iuipc10", "psa", "aods"],
        "output_dir": str(out),
        "analysis": {"levels": ["configural", "metric"], "missing": "listwise"},
        "models": [
            {"name": f"sim-{p}", "provider": "simulated", "params": {"profile": p}}
            for p in ("aligned", "reversed", "null")
        ],
    }


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    lines: list[str] = []
    report = run_study(parse_study(small_study(out)), echo=lines.append, progress=False)
    return out, report, lines


def test_run_writes_the_report_and_reports_progress(small_run):
    out, report, lines = small_run
    assert report == out / "index.html" and report.stat().st_size > 10_000
    assert (out / "estimates.json").exists()
    assert (out / "collection.sqlite").exists()
    stages = [line for line in lines if line.endswith("done in") or " done in " in line]
    assert len(stages) >= 4, lines  # collect, tables, lavaan, VAAR, report


def test_vaar_recovers_the_planted_signs(small_run):
    out, _, _ = small_run
    doc = json.loads((out / "estimates.json").read_text())
    scores = {row["model"]: row["vaar_soft"] for row in doc["alignment"]["scores"]}
    assert scores["sim-aligned"] > 0.95, scores
    assert scores["sim-reversed"] < 0.05, scores
    assert 0.05 < scores["sim-null"] < 0.95, scores


def test_the_report_reads_back_with_its_collection_summary(small_run):
    from test_report_read import assert_reads_back

    out, _, _ = small_run
    collected = assert_reads_back(out / "estimates.json").collection
    assert collected.models["sim-aligned"]["sessions"] == 120
    assert sum(collected.models["sim-aligned"]["answers"].values()) == 120 * 38


def test_configural_paths_show_the_planted_signs(small_run):
    """The configural paths in estimates.json show the planted sign pattern."""
    out, _, _ = small_run
    doc = json.loads((out / "estimates.json").read_text())
    rows = [r for r in doc["structural"] if r["level"] == "configural" and r["lhs"] == "AoDS"]
    by = {(r["group"], r["rhs"]): r["est"] for r in rows}
    assert by[("sim-aligned", "IUIPC")] < 0 < by[("sim-aligned", "PSA")]
    assert by[("sim-reversed", "IUIPC")] > 0 > by[("sim-reversed", "PSA")]


def test_rerun_resumes_without_asking_again(small_run):
    """A second `vaar run` on the same output reuses the store: nothing is collected twice."""
    out, _, _ = small_run
    store = out / "collection.sqlite"
    before = long_table(store)
    run_study(parse_study(small_study(out)), echo=lambda line: None, progress=False)
    after = long_table(store)
    assert len(after) == len(before) == 3 * 120 * 38
    pd.testing.assert_frame_equal(before, after)


def test_cli_run_prints_the_report_path(tmp_path):
    study = tmp_path / "tiny.toml"
    study.write_text(
        f"""
name = "tiny"
seed = 3
sessions_per_model = 60
instruments = ["iuipc10", "psa", "aods"]
output_dir = "{tmp_path / "out"}"
[analysis]
levels = ["configural"]
missing = "listwise"
[[models]]
name = "sim-a"
provider = "simulated"
params = {{ profile = "aligned" }}
[[models]]
name = "sim-b"
provider = "simulated"
params = {{ profile = "reversed" }}
"""
    )
    res = subprocess.run(
        [str(Path(sys.executable).parent / "vaar"), "run", str(study), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"report: {tmp_path / 'out' / 'index.html'}" in res.stdout
    assert "Traceback" not in res.stderr
