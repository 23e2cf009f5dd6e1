"""align(): one call from a fitted SEM to a JSON-ready AlignmentResult (no R needed here: the
SEM result is a hand-built table in vaar.sem's contract)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pandas as pd
import pytest
from test_alignment_scores import PATHS, estimates

from vaar.alignment import FORMULA_NOTE, align, load_reference
from vaar.errors import VaarError


@dataclass
class Fitted:
    """The parts of vaar.sem.SemResult that align() reads."""

    estimates: pd.DataFrame
    decision: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
    fits: pd.DataFrame = field(default_factory=pd.DataFrame)


def fitted() -> Fitted:
    est = pd.concat(
        [
            estimates(
                [
                    ("humans", "IUIPC", -0.3, 0.1),
                    ("humans", "PSA", 0.2, 0.1),
                    ("aligned", "IUIPC", -0.4, 0.1),
                    ("aligned", "PSA", 0.3, 0.1),
                    ("reversed", "IUIPC", 0.4, 0.1),
                    ("reversed", "PSA", -0.3, 0.1),
                    ("broken", "IUIPC", 0.1, math.nan),
                    ("broken", "PSA", 0.1, 0.1),
                ]
            ),
            estimates([("aligned", "IUIPC", -0.4, 0.2), ("aligned", "PSA", 0.3, 0.2)], "metric"),
        ]
    )
    return Fitted(
        est,
        decision={"highest": "metric", "rule": "chen2007"},
        diagnostics={"excluded_groups": [{"group": "silent", "reason": "item psa01 constant"}]},
    )


def test_align_scores_lists_unestimable_models_and_serialises():
    result = align(fitted(), PATHS, load_reference(), level="configural")
    scores = result.scores.set_index("model")
    assert scores.loc["aligned", "vaar_hard"] == 1.0
    assert scores.loc["reversed", "vaar_soft"] < 0.01
    not_estimable = result.not_estimable.set_index("model")["reason"]
    assert set(not_estimable.index) == {"broken", "silent"}
    assert "se=nan" in not_estimable["broken"]
    assert "excluded by vaar.sem: item psa01 constant" in not_estimable["silent"]
    data = json.loads(json.dumps(result.to_dict()))  # JSON-ready: NaN became null
    assert data["formula_verified"] is False and data["formula_note"] == FORMULA_NOTE
    assert "could not be verified" in FORMULA_NOTE
    assert data["level"] == "configural" and "configural" in data["level_reason"]
    broken = next(r for r in data["scores"] if r["model"] == "broken")
    assert broken["vaar_soft"] is None
    assert data["bootstrap"] is None


def test_a_level_that_did_not_converge_gives_no_evidence():
    """Finite estimates and SEs from a fit that did not converge are not scored (real SmolLM2
    data gave a non-converged configural fit with Heywood cases): each fitted model says why; a
    model excluded earlier keeps its own reason; another level that converged is still scored.
    lavaan's "may not be identified" warning alone does not refuse (under MLR it fires when a
    group has fewer sessions than parameters)."""
    fit = fitted()
    fit.fits = pd.DataFrame(
        [{"level": "configural", "converged": False}, {"level": "metric", "converged": True}]
    )
    fit.diagnostics["flags"] = [{"level": "metric", "flag": "not_identified"}]
    why = "the configural model did not converge"
    result = align(fit, PATHS, load_reference(), level="configural")
    assert result.scores.set_index("model").loc[["aligned", "reversed"], "vaar_soft"].isna().all()
    reasons = result.not_estimable.set_index("model")["reason"]
    fitted_models = ["humans", "aligned", "reversed", "broken"]
    assert set(reasons.index) == {*fitted_models, "silent"}
    for model in fitted_models:
        assert why in reasons[model] and "se=" not in reasons[model]
    assert "item psa01 constant" in reasons["silent"]
    assert not result.evidence["supports"].any() and result.evidence["evidence"].isna().all()
    metric = align(fit, PATHS, load_reference(), level="metric")
    assert metric.scores.set_index("model").loc["aligned", "vaar_soft"] > 0.9


def test_highest_level_is_taken_from_the_ladder_decision_and_stated():
    result = align(fitted(), PATHS, load_reference(), level="highest")
    assert result.level == "metric"
    assert "chen2007" in result.level_reason
    scored = result.scores.dropna(subset=["vaar_soft"])
    assert list(scored["model"]) == ["aligned"]  # the others have no metric-level paths
    assert len(result.not_estimable) == 4
    with pytest.raises(VaarError, match="'scalar' was not fitted"):
        align(fitted(), PATHS, load_reference(), level="scalar")
    undecided = fitted()
    undecided.decision = {"highest": None}
    with pytest.raises(VaarError, match="no supported invariance level"):
        align(undecided, PATHS, load_reference(), level="highest")
    with pytest.raises(VaarError, match="alpha must be between 0 and 1"):
        align(fitted(), PATHS, load_reference(), alpha=1.5)


def test_human_group_becomes_the_reference_and_is_reported_beside_the_models():
    result = align(fitted(), PATHS, load_reference(), human_group="humans")
    assert result.reference.human_group == "humans"
    assert "humans" not in set(result.scores["model"])
    assert list(result.human_paths["rhs"]) == ["IUIPC", "PSA"]
    data = result.to_dict()
    assert data["human_group"] == "humans" and len(data["human_paths"]) == 2


def test_bootstrap_by_count_needs_the_fitted_data():
    with pytest.raises(VaarError, match="does not carry the data"):
        align(fitted(), PATHS, load_reference(), bootstrap=5)


def write_estimates_json(path, fit: Fitted, paths=PATHS) -> None:
    """A report's estimates.json of these estimates and paths, as `vaar vaar-score` reads it."""
    from vaar.report import build_estimates
    from vaar.result import StudyResult
    from vaar.sem.model import VaarModel
    from vaar.sem.result import SemResult

    levels = list(dict.fromkeys(fit.estimates["level"]))
    sem = SemResult(
        estimates=fit.estimates, fits=pd.DataFrame({"level": levels}),
        comparisons=pd.DataFrame(), decision=fit.decision, diagnostics=fit.diagnostics,
        lavaan_output={}, versions={},
    )  # fmt: skip
    result = StudyResult.from_analysis(
        name="rescored", study=None, instruments=[], wide=pd.DataFrame(), long=None,
        collection=None, model=VaarModel("AoDS ~ IUIPC + PSA", list(paths), []), sem=sem,
    )  # fmt: skip
    path.write_text(json.dumps(build_estimates(result)))


def test_vaar_score_command_rescores_against_a_human_group(tmp_path):
    from click.testing import CliRunner

    from vaar.cli import main

    estimates_json = tmp_path / "estimates.json"
    write_estimates_json(estimates_json, fitted())
    out = tmp_path / "alignment.json"
    run = CliRunner().invoke(
        main, ["vaar-score", str(estimates_json), "--human-group", "humans", "--json", str(out)]
    )
    assert run.exit_code == 0, run.output
    assert "signs estimated from human group 'humans'" in run.output
    assert "not estimable: broken" in run.output and "could not be verified" in run.output
    assert "human group humans: AoDS ~ IUIPC = -0.300" in run.output
    saved = json.loads(out.read_text())
    assert [r["model"] for r in saved["scores"]] == ["aligned", "reversed", "broken", "silent"]
    run = CliRunner().invoke(main, ["vaar-score", str(estimates_json), "--level", "highest"])
    assert run.exit_code == 0 and "level: metric (highest supported" in run.output


def test_vaar_score_command_errors_are_clear(tmp_path):
    from click.testing import CliRunner

    from vaar.cli import main

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    run = CliRunner().invoke(main, ["vaar-score", str(bad)])
    assert run.exit_code == 2 and "not valid JSON" in run.output
    assert "Traceback" not in run.output
    bad.write_text(json.dumps({"estimates": [], "model": {"paths": []}}))
    run = CliRunner().invoke(main, ["vaar-score", str(bad)])
    assert run.exit_code == 2 and "does not match its schema" in run.output
    write_estimates_json(bad, fitted(), paths=[])  # a user model's report
    run = CliRunner().invoke(main, ["vaar-score", str(bad)])
    assert run.exit_code == 2 and "no structural paths" in run.output
    estimates_json = tmp_path / "estimates.json"
    write_estimates_json(estimates_json, fitted())
    run = CliRunner().invoke(main, ["vaar-score", str(estimates_json), "--human-group", "ghosts"])
    assert run.exit_code == 2 and "human group 'ghosts' has no path estimates" in run.output
