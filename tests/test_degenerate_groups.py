"""Group-level degeneracy through the real pipeline (real lavaan): a model that answers 5 to
every item is left out of the SEM with its reason, the others are fitted and scored, and the
report shows the constant model's profile beside a plain statement; all models constant is one
clear error."""

from __future__ import annotations

import pytest
from test_report import simulated_tables, study_toml, write_instruments

from vaar.errors import VaarError

MODELS = {"sim-aligned": (-0.6, 0.6), "sim-reversed": (0.6, -0.6), "sim-fives": (0.0, 0.0)}
STATEMENT = "answered 5 to every item: no value–action variation to estimate"


def constant(long, wide, models, items):
    """The tables with every answer of `models` set to 5 (as a well-aligned LLM may answer)."""
    long, wide = long.copy(), wide.copy()
    rows = long["model"].isin(models)
    long.loc[rows, ["raw", "value", "status"]] = ["5", 5.0, "ok"]
    wide.loc[wide["model"].isin(models), items] = 5.0
    return long, wide


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from vaar.config import load_study
    from vaar.instruments import load_instruments

    root = tmp_path_factory.mktemp("degenerate")
    paths = write_instruments(root / "instruments")
    text = study_toml("fives", paths, models=MODELS, levels=["configural"])
    text = text.replace("[analysis]\n", '[analysis]\nestimator = "ML"\nmissing = "listwise"\n')
    (root / "study.toml").write_text(text, encoding="utf-8")
    study = load_study(root / "study.toml")
    instruments = load_instruments(study.instruments)
    long, wide = simulated_tables(instruments, models=MODELS, sessions=60, hostile=0)
    items = [i.id for inst in instruments for i in inst.items]
    return study, instruments, long, wide, items, root


def test_a_constant_model_is_explained_and_the_others_analysed(study):
    from vaar.pipeline import analyze_tables
    from vaar.report import write_report

    study, instruments, long, wide, items, root = study
    long, wide = constant(long, wide, ["sim-fives"], items)
    result = analyze_tables(study, wide, instruments, long=long, echo=lambda _: None)
    sem = result.sem
    assert sem.diagnostics["excluded_groups"] == [{"group": "sim-fives", "reason": STATEMENT}]
    assert sem.diagnostics["dropped_items"] == []  # drop_items no longer empties the model
    assert sem.groups == ["sim-aligned", "sim-reversed"]
    scores = result.alignment.scores.set_index("model")
    assert scores.loc["sim-aligned", "vaar_soft"] > 0.9
    assert scores.loc["sim-reversed", "vaar_soft"] < 0.1
    missing = result.alignment.not_estimable.set_index("model")["reason"]
    assert list(missing.index) == ["sim-fives"] and STATEMENT in missing["sim-fives"]
    html = write_report(root / "report", result).read_text(encoding="utf-8")
    note = html.split('id="excluded-models"')[1].split("</p>")[0]
    assert "<strong>sim-fives</strong>: " + STATEMENT in note
    profiles = result.profiles.table
    fives = profiles[profiles["model"] == "sim-fives"]
    assert len(fives) and (fives["straightlining"] == 1).all() and (fives["sd"] == 0).all()


def test_every_model_constant_is_one_clear_error(study):
    from vaar.pipeline import analyze_tables

    study, instruments, long, wide, items, _ = study
    long, wide = constant(long, wide, list(MODELS), items)
    with pytest.raises(VaarError) as caught:
        analyze_tables(study, wide, instruments, long=long, echo=lambda _: None)
    assert str(caught.value).count("answered 5 to every item") == 3
    assert "\n" not in str(caught.value) and "no group is left to fit" in str(caught.value)
