"""One orchestrator, one schema: read statically (ast, nothing imported), only vaar.pipeline
builds a StudyResult from an analysis and only the stores hold SQL; and, with real lavaan, a
user's own model analysed by `vaar analyze` and by the service gives the same fit and the same
provenance record."""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest

from vaar.service.testing import export_holzinger

PACKAGE = Path(__file__).parents[1] / "vaar"
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE FROM|CREATE TABLE|ALTER TABLE|PRAGMA)\b")
# where SQL may live: the collection store (the one place that knows its schema) and the
# service's own job queue (a database of its own, not the collection's)
SQL_MODULES = {"collection/store.py", "service/store.py"}


def trees():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def test_only_the_stores_hold_sql():
    found = []
    for name, tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if SQL.search(node.value):
                    found.append(f"{name}:{node.lineno}: {node.value.strip()[:40]!r}")
            elif isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                modules += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                if any(m.split(".")[0] == "sqlite3" for m in modules):
                    found.append(f"{name}:{node.lineno}: import sqlite3")
    outside = [f for f in found if f.split(":")[0] not in SQL_MODULES]
    assert outside == []
    assert {f.split(":")[0] for f in found} == SQL_MODULES  # the check sees the stores' SQL


def test_only_the_pipeline_builds_a_study_result_from_an_analysis():
    callers = {
        name
        for name, tree in trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "from_analysis"
    }
    assert callers == {"pipeline.py"}


def test_the_report_renders_and_finds_nothing():
    """vaar.report writes what it is given: it imports neither the pipeline nor the inputs."""
    for name, tree in trees():
        if not name.startswith("report/"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("vaar.pipeline", "vaar.data")), name


@pytest.fixture(scope="module")
def hs_csv(tmp_path_factory) -> Path:
    return export_holzinger(tmp_path_factory.mktemp("hs") / "hs.csv")


def test_a_users_model_gets_one_fit_and_one_record_from_the_cli_and_the_service(hs_csv, tmp_path):
    from vaar.data.inputs import Job
    from vaar.pipeline import analyze_job
    from vaar.report.document import build_estimates
    from vaar.service import jobs

    syntax = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6"
    cli = build_estimates(
        analyze_job(Job("hs", hs_csv, None, hs_csv), user_model=(syntax, "school"), echo=print)
    )
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    shutil.copyfile(hs_csv, job_dir / jobs.INPUT_FILE)
    spec = {"kind": "model", "group": "school", "filename": "hs.csv", "model": syntax,
            "study": None, "instruments": []}  # fmt: skip
    stages = []
    summary = jobs.run_job(lambda *stage: stages.append(stage), job_dir=str(job_dir), spec=spec)
    served = json.loads((job_dir / jobs.REPORT_DIR / "estimates.json").read_text())

    assert [s for s, _ in stages] == ["reading data", "fitting the lavaan model",
                                      "writing the report"]  # fmt: skip
    assert served["provenance"].keys() == cli["provenance"].keys()
    assert served["provenance"]["group_column"] == cli["provenance"]["group_column"] == "school"
    assert served["provenance"]["data_file"] == "hs.csv"
    assert cli["provenance"]["data_file"] == str(hs_csv)
    assert served["study"]["name"] == cli["study"]["name"] == "hs"
    assert served["invariance"] == cli["invariance"]
    assert served["estimates"] == cli["estimates"]
    assert summary["groups"] == ["Grant-White", "Pasteur"]
    assert {lv["level"] for lv in summary["levels"]} == {"configural", "metric", "scalar", "strict"}
