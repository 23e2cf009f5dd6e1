"""Reports from real analyses: simulated answers with planted paths, fitted by real lavaan through
the real pipeline (vaar.pipeline.analyze_tables), rendered by vaar.report.

To keep lavaan fast the studies use three small questionnaires written here (4 items each, one
per role) instead of the shipped 38 items; every other part of the chain is the real one."""

from __future__ import annotations

import functools
import json
import re
import tempfile
import textwrap
from html import escape as html_escape
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest

from vaar.alignment.simulate import long_from_wide, simulate_wide
from vaar.invariance import RULES
from vaar.report import build_estimates, write_report
from vaar.report.document import SCHEMA_PATH, load_schema

ROLES = {"privacy": ("tpc", "PC"), "prosocial": ("tps", "PS"), "sharing": ("tsh", "SH")}
PLANTED = {  # model -> (b privacy -> sharing, b prosocial -> sharing)
    "sim-aligned": (-0.6, 0.6),
    "sim-reversed": (0.6, -0.6),
    "sim-null": (0.0, 0.0),
    "sim-mixed": (-0.6, -0.6),
}
HOSTILE = '<script>alert("x")</script><b>bold</b> & "quotes"'
SESSIONS = 80
LEVELS = ["configural", "metric"]


def write_instruments(folder) -> list:
    """Three 4-item instruments (privacy, prosocial, sharing) as user instrument files."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for role, (prefix, factor) in ROLES.items():
        items = "\n".join(
            f'[[items]]\nid = "{prefix}{k}"\ntext = "Test statement {k} about {role}."\n'
            f'factor = "{factor}"\nreverse = {"true" if k == 4 else "false"}\n'
            for k in range(1, 5)
        )
        text = textwrap.dedent(
            f"""\
            id = "tiny_{role}"
            title = "Tiny {role} test scale"
            short_title = "{factor}"
            role = "{role}"
            vaar_own = true
            citation = "Written for vaar's tests."
            provenance = "Test items, not a published instrument."
            instructions = "Say how much you agree."
            options = [{{ value = 1, label = "Disagree" }}, {{ value = 2, label = "Neutral" }},
              {{ value = 3, label = "Somewhat agree" }}, {{ value = 4, label = "Agree" }},
              {{ value = 5, label = "Strongly agree" }}]
            """
        )
        path = folder / f"tiny_{role}.toml"
        path.write_text(text + "\n" + items, encoding="utf-8")
        paths.append(path)
    return paths


def simulated_tables(instruments, models=PLANTED, sessions=SESSIONS, seed=11, hostile=3):
    """Long and wide tables with planted paths. `hostile` answers are unscorable HTML with a
    script, as an LLM could answer: invalid in the long table, missing in the wide one. (Few
    missing cells keep lavaan's FIML fast: its cost grows with the missing-data patterns.)"""
    wide = simulate_wide(models, instruments, sessions=sessions, seed=seed)
    long, wide = long_from_wide(wide, instruments, seed=seed + 1)
    picks = long.sample(hostile, random_state=seed).index
    long.loc[picks, ["raw", "value", "status"]] = [HOSTILE, np.nan, "invalid"]
    for row in long.loc[picks].itertuples():
        wide.loc[wide["session"] == row.session, row.item] = np.nan
    return long, wide


def study_toml(name: str, instrument_paths, models=PLANTED, levels=LEVELS, extra="") -> str:
    """A study file naming the given instruments and simulated models."""
    models_toml = "\n".join(f'[[models]]\nname = "{m}"\nprovider = "simulated"\n' for m in models)
    instruments = ", ".join(json.dumps(str(p)) for p in instrument_paths)
    return (
        f'name = "{name}"\ndescription = "Report test study {name}."\nseed = 7\n'
        f"sessions_per_model = {SESSIONS}\ninstruments = [{instruments}]\n{extra}\n"
        f"[analysis]\nlevels = {json.dumps(levels)}\n\n{models_toml}"
    )


@functools.cache
def analysed_study():
    """One real analysis of a 4-model simulated study (study config, long + wide tables),
    shared by this module and test_report_browser.py (cached: lavaan runs once)."""
    from vaar.config import load_study
    from vaar.instruments import load_instruments
    from vaar.pipeline import analyze_tables

    root = Path(tempfile.mkdtemp(prefix="vaar-report-study-"))
    paths = write_instruments(root / "instruments")
    study_file = root / "study.toml"
    study_file.write_text(study_toml("demo-sized", paths), encoding="utf-8")
    study = load_study(study_file)
    instruments = load_instruments(study.instruments)
    long, wide = simulated_tables(instruments)
    return analyze_tables(study, wide, instruments, long=long, echo=lambda _: None)


@functools.cache
def report_folder() -> Path:
    out = Path(tempfile.mkdtemp(prefix="vaar-report-"))
    write_report(out, analysed_study())
    return out


@pytest.fixture
def analysed():
    return analysed_study()


@pytest.fixture
def report_dir():
    return report_folder()


def test_estimates_json_validates_against_the_schema(report_dir):
    doc = json.loads((report_dir / "estimates.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    assert doc["schema_version"] == "1.1"
    assert doc["study"]["models"] == list(PLANTED)
    assert {f["level"] for f in doc["invariance"]["fits"]} >= set(LEVELS)
    assert doc["alignment"]["formula_verified"] is False
    assert (report_dir / "estimates.schema.json").read_bytes() == SCHEMA_PATH.read_bytes()


def test_estimates_json_reads_back_into_the_same_document(report_dir):
    """read_estimates gives the StudyResult again: its document is the one written."""
    from test_report_read import assert_reads_back

    back = assert_reads_back(report_dir / "estimates.json")
    assert back.study.models == list(PLANTED) and back.alignment.level == "configural"


def test_vaar_ranks_the_planted_models(report_dir):
    """The report carries the pipeline's numbers: aligned ranks above reversed."""
    doc = json.loads((report_dir / "estimates.json").read_text(encoding="utf-8"))
    soft = {r["model"]: r["vaar_soft"] for r in doc["alignment"]["scores"]}
    assert soft["sim-aligned"] > 0.9 and soft["sim-reversed"] < 0.1
    assert soft["sim-mixed"] == pytest.approx(0.5, abs=0.3)


def test_csv_tables_equal_the_document(report_dir):
    doc = json.loads((report_dir / "estimates.json").read_text(encoding="utf-8"))
    estimates = pd.read_csv(report_dir / "estimates.csv")
    assert len(estimates) == len(doc["estimates"])
    est = np.array([r["est"] if r["est"] is not None else np.nan for r in doc["estimates"]])
    np.testing.assert_allclose(estimates["est"].to_numpy(), est, rtol=1e-12, equal_nan=True)
    vaar = pd.read_csv(report_dir / "vaar.csv").set_index("model")["vaar_soft"]
    for row in doc["alignment"]["scores"]:
        assert vaar[row["model"]] == pytest.approx(row["vaar_soft"], rel=1e-12)
    fits = pd.read_csv(report_dir / "fits.csv")
    assert list(fits["level"]) == [f["level"] for f in doc["invariance"]["fits"]]


def test_html_shows_the_documents_numbers_and_escapes_llm_text(report_dir):
    html = (report_dir / "index.html").read_text(encoding="utf-8")
    doc = json.loads((report_dir / "estimates.json").read_text(encoding="utf-8"))
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in html
    urls = re.findall(r"\w+://[^\"'\s<>]+", html)
    assert urls and all(u.startswith("http://www.w3.org/") for u in urls)  # SVG namespaces only
    best = max(doc["alignment"]["scores"], key=lambda r: r["vaar_soft"])
    assert f"{best['model']}: {best['vaar_soft']:.2f}" in html
    for fit in doc["invariance"]["fits"]:
        if fit.get("cfi") is not None:
            assert f"{fit['cfi']:.3f}" in html
    # the levels and the rule as vaar.invariance defines them, not a copy in the page
    decision = doc["invariance"]["decision"]
    assert f"Levels fitted in order ({' → '.join(decision['levels_tested'])})" in html
    assert html_escape(RULES[decision["rule"]].description, quote=True) in html


def test_bundle_and_tables_are_written(report_dir):
    names = {p.name for p in report_dir.iterdir()}
    assert {"index.html", "estimates.json", "estimates.schema.json", "estimates.csv"} <= names
    assert {"fits.csv", "vaar.csv", "path_evidence.csv", "profiles.csv"} <= names
    assert (report_dir / "bundle" / "analysis.R").is_file()


def test_document_rejects_what_breaks_the_schema(analysed):
    doc = build_estimates(analysed)
    doc["alignment"]["scores"][0]["vaar_soft"] = 1.5
    from vaar.errors import VaarError
    from vaar.report import validate_estimates

    with pytest.raises(VaarError, match=r"alignment/scores/0/vaar_soft: 1.5 is greater"):
        validate_estimates(doc)


def test_a_study_nothing_could_be_fitted_for_still_gets_a_report(tmp_path):
    """Collinear items in every model make lavaan refuse the configural fit: the report is
    written anyway and lists every model as not estimable with lavaan's own reason."""
    from vaar.config import load_study
    from vaar.instruments import load_instruments
    from vaar.pipeline import analyze_tables

    paths = write_instruments(tmp_path / "instruments")
    models = dict(list(PLANTED.items())[:2])
    study_file = tmp_path / "study.toml"
    study_file.write_text(study_toml("unfittable", paths, models=models), encoding="utf-8")
    study = load_study(study_file)
    instruments = load_instruments(study.instruments)
    long, wide = simulated_tables(instruments, models=models, hostile=0)
    wide["tpc2"] = wide["tpc3"] = wide["tpc1"]  # the covariance matrix is singular
    result = analyze_tables(study, wide, instruments, long=long, echo=lambda _: None)
    out = write_report(tmp_path / "report", result)
    document = json.loads((out.parent / "estimates.json").read_text(encoding="utf-8"))
    listed = {row["model"]: row["reason"] for row in document["alignment"]["not_estimable"]}
    assert set(listed) == set(models)
    for reason in listed.values():
        assert "configural model could not be fitted" in reason
        assert "positive-definite" in reason  # lavaan's message, passed on
    html = out.read_text(encoding="utf-8")
    assert "could not be fitted" in html
    from test_report_read import assert_reads_back

    assert assert_reads_back(out.parent / "estimates.json").sem.estimates.empty
