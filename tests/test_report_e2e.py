"""`vaar analyze` end to end, real collection store and real lavaan: a batch folder of three
studies (one collected into a SQLite store by the simulated provider, one exported as a long
CSV, one whose export is broken) gives two reports, an index and a clear failure with exit 1;
`--model/--group` fits a user's own lavaan model to a plain table."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import numpy as np
import pytest
from click.testing import CliRunner
from test_report import simulated_tables, study_toml, write_instruments
from test_report_read import assert_reads_back

from vaar.cli import main
from vaar.config import load_study
from vaar.instruments import load_instruments
from vaar.report.document import load_schema

MODELS = {"sim-aligned": (-0.6, 0.6), "sim-reversed": (0.6, -0.6), "sim-null": (0.0, 0.0)}
FAST = "sessions_per_model = 60\n[session]\nitems_per_turn = 4\n"  # few chat turns to collect
LEVELS = ["configural"]


def _study(folder, name, instrument_paths, profiles=False):
    """A study folder with a study.toml; `profiles` gives the simulated models their profile."""
    folder.mkdir(parents=True)
    text = study_toml(name, instrument_paths, models=MODELS, levels=LEVELS)
    text = text.replace("sessions_per_model = 80\n", "")
    text = text.replace("[analysis]\n", '[analysis]\nestimator = "ML"\n')
    if profiles:
        for model, profile in zip(MODELS, ("aligned", "reversed", "null"), strict=True):
            text = text.replace(
                f'name = "{model}"\nprovider = "simulated"\n',
                f'name = "{model}"\nprovider = "simulated"\nparams = {{ profile = "{profile}" }}\n',
            )
    study_file = folder / "study.toml"
    study_file.write_text(text.replace("[analysis]", FAST + "\n[analysis]", 1), encoding="utf-8")
    return study_file


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    from vaar.collection import collect

    root = tmp_path_factory.mktemp("batch")
    paths = write_instruments(root / "instruments")
    studies = root / "studies"
    stored = load_study(_study(studies / "stored", "stored", paths, profiles=True))
    summary = asyncio.run(collect(stored, studies / "stored" / "collection.sqlite", False))
    assert not summary.to_dict().get("incomplete")

    exported = load_study(_study(studies / "exported", "exported", paths))
    long, _ = simulated_tables(load_instruments(exported.instruments), models=MODELS, sessions=60)
    long.to_csv(studies / "exported" / "answers.csv", index=False)

    _study(studies / "broken", "broken", paths)
    long.loc[5, ["raw", "value"]] = ["9", 9.0]  # off the 1-5 scale
    long.to_csv(studies / "broken" / "answers.csv", index=False)

    out = root / "reports"
    result = CliRunner().invoke(main, ["analyze", str(studies), "--out", str(out)])
    return result, out


def test_batch_keeps_going_and_exits_1_with_a_summary(batch):
    result, out = batch
    assert result.exit_code == 1, result.output
    assert "[vaar] 3 studies to analyse" in result.output
    assert "[1/3] broken" in result.output and "[3/3] stored" in result.output
    assert "[vaar] lavaan multi-group SEM done in" in result.output  # stage progress
    assert "2 of 3 studies analysed" in result.output
    failure = next(line for line in result.output.splitlines() if "FAILED  broken" in line)
    assert "answers.csv" in failure and "9" in failure
    assert "Traceback" not in result.output


def test_batch_writes_two_reports_and_an_index(batch):
    _, out = batch
    validator = jsonschema.Draft202012Validator(load_schema())
    for name in ("stored", "exported"):
        folder = out / name
        doc = json.loads((folder / "estimates.json").read_text(encoding="utf-8"))
        validator.validate(doc)
        assert doc["study"]["name"] == name
        assert doc["study"]["models"] == list(MODELS)
        assert (folder / "index.html").is_file() and (folder / "bundle" / "analysis.R").is_file()
        assert (folder / "vaar.csv").is_file()
        assert_reads_back(folder / "estimates.json")
    assert not (out / "broken").exists()
    index = (out / "index.html").read_text(encoding="utf-8")
    assert '<a href="stored/index.html">' in index and '<a href="exported/index.html">' in index
    assert "2 of 3 studies analysed" in index and "failed" in index


def test_store_report_carries_the_collection_and_the_planted_signs(batch):
    _, out = batch
    doc = json.loads((out / "stored" / "estimates.json").read_text(encoding="utf-8"))
    rows = {r["model"]: r for r in doc["collection"]["models"]}
    assert set(rows) == set(MODELS)
    assert all(r["sessions"] == 60 and r["valid_rate"] > 0.5 for r in rows.values())
    assert all(r["prompt_tokens"] > 0 for r in rows.values())
    soft = {r["model"]: r["vaar_soft"] for r in doc["alignment"]["scores"]}
    assert soft["sim-aligned"] > soft["sim-null"] > soft["sim-reversed"]


def test_user_model_on_a_plain_table(tmp_path):
    """--model/--group: any lavaan model, any group column; SEM report without VAAR."""
    rng = np.random.default_rng(3)
    rows = []
    for group, slope in (("lab <A>", 0.6), ("lab B", -0.4)):
        x = rng.standard_normal(150)
        y = slope * x + rng.standard_normal(150) * 0.8
        for i in range(150):
            rows.append(
                {"llm": group}
                | {f"x{k}": x[i] + rng.standard_normal() * 0.6 for k in (1, 2, 3)}
                | {f"y{k}": y[i] + rng.standard_normal() * 0.6 for k in (1, 2, 3)}
            )
    import pandas as pd

    table = tmp_path / "mine.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    model = tmp_path / "mine.lav"
    model.write_text("X =~ x1 + x2 + x3\nY =~ y1 + y2 + y3\nY ~ X\n", encoding="utf-8")
    out = tmp_path / "out"
    args = ["analyze", str(table), "--model", str(model), "--group", "llm", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "mine" / "estimates.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    assert doc["alignment"] is None
    assert assert_reads_back(out / "mine" / "estimates.json").model.paths == []
    paths = {r["group"]: r["est"] for r in doc["structural"] if r["level"] == "configural"}
    assert paths["lab <A>"] > 0.3 and paths["lab B"] < -0.1
    html = (out / "mine" / "index.html").read_text(encoding="utf-8")
    assert "lab &lt;A&gt;" in html and "lab <A>" not in html
    assert "VAAR is not computed" in html

    missing = CliRunner().invoke(
        main, ["analyze", str(table), "--model", str(model), "--group", "nope"]
    )
    assert missing.exit_code == 1
    assert "no group column 'nope'" in missing.output


def test_human_group_level_and_bootstrap_from_the_command_line(tmp_path):
    """`--human-group humans --bootstrap 3 --standardized`: the humans in the data set the
    reference (planted here with the *opposite* of the built-in signs, so the scores show whose
    signs were used), are reported beside the models and not scored; the VAAR intervals come
    from 3 refits."""
    humans = {"humans": (0.6, -0.6), "sim-aligned": (-0.6, 0.6), "sim-reversed": (0.6, -0.6)}
    paths = write_instruments(tmp_path / "instruments")
    study = load_study(_study(tmp_path / "mixed", "mixed", paths))
    long, _ = simulated_tables(
        load_instruments(study.instruments), models=humans, sessions=80, hostile=0
    )
    long.to_csv(tmp_path / "mixed" / "answers.csv", index=False)
    out = tmp_path / "out"
    args = ["analyze", str(tmp_path / "mixed"), "--out", str(out), "--human-group", "humans"]
    options = ["--bootstrap", "3", "--workers", "1", "--standardized", "--level", "configural"]
    options += ["--intervals", "basic-z"]  # the default is percentile
    result = CliRunner().invoke(main, [*args, *options])
    assert result.exit_code == 0, result.output
    assert "[vaar] bootstrap: 3/3 draws refitted" in result.output
    doc = json.loads((out / "mixed" / "estimates.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(load_schema()).validate(doc)
    alignment = doc["alignment"]
    assert alignment["reference_source"] == "group:humans"
    assert alignment["scale"] == "standardized" and alignment["level"] == "configural"
    soft = {r["model"]: r for r in alignment["scores"]}
    assert set(soft) == {"sim-aligned", "sim-reversed"}  # the humans are not scored
    assert soft["sim-reversed"]["vaar_soft"] > 0.9 > 0.1 > soft["sim-aligned"]["vaar_soft"]
    assert all(r["draws_ok"] + r["draws_failed"] == 3 for r in soft.values())
    assert alignment["bootstrap"]["requested"] == 3
    assert alignment["bootstrap"]["interval_method"] == "basic-z"
    back = assert_reads_back(out / "mixed" / "estimates.json").alignment
    assert back.bootstrap.method == "basic-z" and back.reference.human_group == "humans"
    human = alignment["human_paths"]
    assert {r["group"] for r in human} == {"humans"} and len(human) == 2
    html = (out / "mixed" / "index.html").read_text(encoding="utf-8")
    assert "Human group humans: structural paths" in html
    assert "Draws used" in html  # the bootstrap's per-model draw counts are in the VAAR table

    wrong = CliRunner().invoke(main, [*args[:-1], "nobody"])
    assert wrong.exit_code == 1
    assert "human group 'nobody' has no path estimates" in wrong.output
