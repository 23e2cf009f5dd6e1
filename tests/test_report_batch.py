"""`vaar analyze` without R: finding studies in what the user points at, the batch index page,
and clear errors for bad input. (The analysed end-to-end batch is in test_report_e2e.py.)"""

from __future__ import annotations

import sqlite3

import pytest
from click.testing import CliRunner

from vaar.cli import main
from vaar.collection.store import Store
from vaar.data.inputs import find_jobs
from vaar.errors import VaarError
from vaar.pipeline import Outcome
from vaar.report.index import write_index


def _touch(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_find_jobs_reads_files_study_folders_and_batch_folders(tmp_path):
    table = _touch(tmp_path / "answers.csv", "model,session\n")
    study = _touch(tmp_path / "one" / "study.toml", 'name = "alpha"\n')
    store = _touch(tmp_path / "one" / "collection.sqlite")
    _touch(tmp_path / "batch" / "s1" / "wide.parquet")
    _touch(tmp_path / "batch" / "s2" / "study.toml", 'name = "beta"\n')
    _touch(tmp_path / "batch" / "s3" / "a.toml")
    _touch(tmp_path / "batch" / "s3" / "b.toml")  # ambiguous: still a job, one that will fail
    _touch(tmp_path / "batch" / "loose.csv")

    jobs = find_jobs([table, tmp_path / "one", tmp_path / "batch"])

    assert [j.name for j in jobs] == ["answers", "alpha", "s1", "beta", "s3", "loose"]
    assert (jobs[0].data_file, jobs[0].study_file) == (table, None)
    assert (jobs[1].study_file, jobs[1].data_file) == (study, store)
    assert jobs[3].data_file is None  # the study's own store is looked up when it runs
    assert (jobs[4].study_file, jobs[4].data_file) == (None, None)


def _store(path, study_name):
    """An empty vaar store that recorded its study's name (enough for finding studies)."""
    store = Store(path)
    store.bind_study(study_name, "fingerprint", {})
    store.close()
    return path


def test_a_report_folder_is_its_store(tmp_path):
    """`vaar analyze reports/demo`: the store is the study; the report's own CSV tables and
    bundle next to it are not studies."""
    folder = tmp_path / "reports" / "demo"
    store = _store(folder / "collection.sqlite", "demo-study")
    for name in ("estimates.csv", "fits.csv", "bundle/data.csv"):
        _touch(folder / name, "a,b\n")
    jobs = find_jobs([folder])
    assert [(j.name, j.data_file) for j in jobs] == [("demo-study", store)]
    assert [j.name for j in find_jobs([store])] == ["demo-study"]


def _other_database(path):
    """Another application's SQLite file, with a `meta` table of its own."""
    con = sqlite3.connect(path)
    with con:
        con.execute("CREATE TABLE meta (key TEXT, value TEXT)")
        con.execute("INSERT INTO meta VALUES ('study', 'not-ours')")
    con.close()
    return path


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda p: _store(p, "recorded"), "recorded"),  # a vaar store names its study
        (lambda p: _store(p, ""), "answers"),  # no name recorded: the file's
        (lambda p: _touch(p), "answers"),  # an empty file
        (lambda p: _touch(p, "not a database at all"), "answers"),
        (_other_database, "answers"),  # its `meta` is not a vaar store's
        (lambda p: p.mkdir() or p, None),  # a folder named like a store: a batch, no study
    ],
)
def test_a_store_is_named_by_its_study_else_by_its_file(tmp_path, make, name):
    path = make(tmp_path / "answers.sqlite")
    if name is None:
        with pytest.raises(VaarError, match="no study found"):
            find_jobs([path])
        return
    assert [j.name for j in find_jobs([path])] == [name]
    folder = name if name != "answers" else tmp_path.name  # the folder holding that one store
    assert [j.name for j in find_jobs([tmp_path])] == [folder]


def test_find_jobs_makes_names_unique(tmp_path):
    a = _touch(tmp_path / "x" / "data.csv")
    b = _touch(tmp_path / "y" / "data.csv")
    assert [j.name for j in find_jobs([a, b])] == ["data", "data-2"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p / "missing.csv", "no such file or folder"),
        (lambda p: _touch(p / "notes.txt"), "not a study (.toml), store (.sqlite) or table"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no study found"),
    ],
)
def test_find_jobs_says_what_is_wrong(tmp_path, setup, message):
    with pytest.raises(VaarError, match=message.replace("(", r"\(").replace(")", r"\)")):
        find_jobs([setup(tmp_path)])


def test_index_links_reports_and_escapes_errors(tmp_path):
    report = _touch(tmp_path / "good" / "index.html", "<html></html>")
    outcomes = [
        Outcome("good", tmp_path / "good.csv", report=report, summary={"models": 3}),
        Outcome("bad<b>", tmp_path / "bad.csv", error="column <script>alert(1)</script> bad"),
    ]
    html = write_index(tmp_path, outcomes).read_text(encoding="utf-8")
    assert '<a href="good/index.html">' in html
    assert "1 of 2 studies analysed" in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "bad&lt;b&gt;" in html


def test_analyze_cli_rejects_model_without_group(tmp_path):
    table = _touch(tmp_path / "d.csv", "model,session\n")
    lav = _touch(tmp_path / "m.lav", "f =~ a + b + c\n")
    result = CliRunner().invoke(main, ["analyze", str(table), "--model", str(lav)])
    assert result.exit_code == 2
    assert "--model and --group go together" in result.output
    assert "Traceback" not in result.output


def test_analyze_cli_rejects_empty_model_file(tmp_path):
    table = _touch(tmp_path / "d.csv", "model,session\n")
    lav = _touch(tmp_path / "m.lav", "  \n")
    args = ["analyze", str(table), "--model", str(lav), "--group", "model"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "the file is empty" in result.output


def test_analyze_cli_says_own_models_get_no_vaar_options(tmp_path):
    table = _touch(tmp_path / "d.csv", "model,session\n")
    lav = _touch(tmp_path / "m.lav", "f =~ a + b + c\n")
    args = ["analyze", str(table), "--model", str(lav), "--group", "model", "--bootstrap", "5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "without VAAR: only --estimator" in result.output
