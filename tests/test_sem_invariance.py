"""The invariance levels and decision rules as data (vaar.invariance): what each level name
means, the tables R gets, and R's judgement of a comparison under each rule's criteria."""

import math
import shutil

import pandas as pd
import pytest

from vaar import invariance
from vaar.errors import VaarError
from vaar.invariance import level_of, levels_to_fit, parameter_class, r_tables

# Every name a fit of the ladder can carry: (parameter class, SRMR cut-off, partial search frees).
ALL_LEVEL_NAMES = [
    ("configural", "", "srmr_other", ()),
    ("thresholds", "thresholds", "srmr_other", ("|",)),
    ("thresholds_partial", "thresholds", "srmr_other", ("|",)),
    ("metric", "loadings", "srmr_loadings", ("=~",)),
    ("metric_partial", "loadings", "srmr_loadings", ("=~",)),
    ("scalar", "intercepts", "srmr_other", ("~1",)),
    ("scalar_partial", "intercepts", "srmr_other", ("~1",)),
    ("strict", "residuals", "srmr_other", ("~~",)),
    ("strict_partial", "residuals", "srmr_other", ("~~",)),
    ("equal_paths", "regressions", "srmr_other", ("~",)),
]


@pytest.mark.parametrize("name, constrains, srmr, frees", ALL_LEVEL_NAMES)
def test_each_level_name_maps_to_its_parameter_class(name, constrains, srmr, frees):
    assert parameter_class(name) == constrains
    assert level_of(name).srmr == srmr
    assert level_of(name).frees == frees


@pytest.mark.parametrize(
    "name", ["weak", "configural_partial", "equal_paths_partial", "metric_partial_partial",
             "Metric", "", "partial", "_partial", "metric_bootstrap"],
)  # fmt: skip
def test_an_unknown_level_name_is_an_error(name):
    with pytest.raises(VaarError, match=f"unknown invariance level {name!r}"):
        level_of(name)


@pytest.mark.parametrize(
    "requested, ordinal, fitted",
    [
        (None, False, ["configural", "metric", "scalar", "strict"]),
        (None, True, ["configural", "thresholds", "metric", "scalar", "strict"]),
        (["configural"], True, ["configural"]),
        (["thresholds"], True, ["configural", "thresholds"]),
        (["metric"], True, ["configural", "thresholds", "metric"]),
        (["strict", "metric"], False, ["configural", "metric", "strict"]),
        (["scalar"], False, ["configural", "scalar"]),
        (["metric", "metric"], False, ["configural", "metric"]),
    ],
)
def test_levels_to_fit_in_ladder_order(requested, ordinal, fitted):
    assert levels_to_fit(requested, ordinal) == fitted


def test_thresholds_are_an_ordinal_level_only():
    with pytest.raises(VaarError, match=r"unknown invariance level\(s\) \['thresholds'\]"):
        levels_to_fit(["thresholds"], ordinal=False)


def test_the_ladder_table_r_gets():
    tables = r_tables(["configural", "scalar", "strict"], "chen2007", ordinal=False,
                      equal_paths=True)  # fmt: skip
    ladder = tables["ladder"]
    assert ladder.to_dict("records") == [
        {"level": "configural", "partial": "", "equal": "", "frees": "", "srmr": "srmr_other",
         "kind": "level"},
        # the levels skipped keep their constraints: scalar holds the loadings too
        {"level": "scalar", "partial": "scalar_partial", "equal": "loadings,intercepts",
         "frees": "~1", "srmr": "srmr_other", "kind": "level"},
        {"level": "strict", "partial": "strict_partial",
         "equal": "loadings,intercepts,residuals", "frees": "~~", "srmr": "srmr_other",
         "kind": "level"},
        {"level": "equal_paths", "partial": "", "equal": "regressions", "frees": "~",
         "srmr": "srmr_other", "kind": "paths"},
    ]  # fmt: skip
    ordinal = r_tables(levels_to_fit(None, True), "lrt", ordinal=True, equal_paths=False)
    rows = ordinal["ladder"].set_index("level")
    assert list(rows.index) == ["configural", "thresholds", "metric", "scalar", "strict"]
    assert rows.loc["metric", "equal"] == "thresholds,loadings"
    assert rows.loc["metric", "srmr"] == "srmr_loadings"
    # Wu & Estabrook (2016): the ordinal scalar search also frees thresholds
    assert rows.loc["scalar", "frees"] == "~1,|"
    assert ordinal["criteria"].to_dict("records") == [
        {"statistic": "lrt_pvalue", "label": "LRT p", "breach": "below", "cutoff": "alpha",
         "need": "all"}
    ]  # fmt: skip


def test_thresholds_merge_with_the_defaults_and_are_checked():
    assert invariance.thresholds(None) == invariance.DEFAULT_THRESHOLDS
    assert invariance.thresholds({"cfi": 0.02})["cfi"] == 0.02
    assert list(invariance.thresholds({"alpha": 0.1})) == list(invariance.DEFAULT_THRESHOLDS)
    with pytest.raises(VaarError, match=r"unknown threshold\(s\) \['cfl'\]"):
        invariance.thresholds({"cfl": 0.01})
    for bad in (0, -0.1, "0.01", True, None):
        with pytest.raises(VaarError, match="must be a positive number"):
            invariance.thresholds({"rmsea": bad})
    with pytest.raises(VaarError, match="unknown decision rule 'vibes'"):
        invariance.rule("vibes")


def test_choice_lists_come_from_the_types():
    """The study config, fit_ladder and the CLI take their vocabularies from one place."""
    from typing import get_args

    from click import Choice

    from vaar.commands import analyze
    from vaar.config import VAAR_LEVELS, AnalysisSpec
    from vaar.sem.commands import sem_fit
    from vaar.sem.degenerate import STRATEGIES

    fields = AnalysisSpec.model_fields
    assert get_args(fields["estimator"].annotation) == invariance.ESTIMATORS
    assert get_args(get_args(fields["levels"].annotation)[0]) == invariance.STUDY_LEVELS
    assert get_args(fields["degenerate"].annotation) == invariance.DEGENERATE == STRATEGIES
    assert get_args(fields["missing"].annotation) == invariance.MISSING
    assert AnalysisSpec().levels == list(invariance.STUDY_LEVELS)
    choices = {p.name: p.type.choices for p in sem_fit.params if isinstance(p.type, Choice)}
    assert tuple(choices["rule"]) == tuple(invariance.RULES)
    assert tuple(choices["estimator"]) == invariance.ESTIMATORS
    assert tuple(choices["degenerate"]) == invariance.DEGENERATE
    choices = {p.name: p.type.choices for p in analyze.params if isinstance(p.type, Choice)}
    assert tuple(choices["estimator"]) == invariance.ESTIMATORS
    assert tuple(choices["vaar_level"]) == VAAR_LEVELS == get_args(fields["vaar_level"].annotation)


def difference(d_cfi=math.nan, d_rmsea=math.nan, d_srmr=math.nan, lrt_pvalue=math.nan,
               usable=True) -> dict:  # fmt: skip
    """A comparison as r/compare.R's vaar_difference gives it (only what a rule reads)."""
    return {
        "indices": {"d_cfi": d_cfi, "d_rmsea": d_rmsea, "d_srmr": d_srmr},
        "lrt": {"lrt_pvalue": lrt_pvalue},
        "usable": usable,
    }


LIMITS = {**invariance.DEFAULT_THRESHOLDS, "srmr": 0.03}  # a metric step: the loadings' cut-off
# (rule, difference, holds, reason): the reasons as the rules' hand-written texts gave them
JUDGED = [
    ("chen2007", difference(-0.02, 0.02, 0.0), False,
     "dCFI -0.02 <= -0.01 and (dRMSEA 0.02 >= 0.015 or dSRMR 0 >= 0.03)"),
    ("chen2007", difference(-0.02, 0.0, 0.031), False,
     "dCFI -0.02 <= -0.01 and (dRMSEA 0 >= 0.015 or dSRMR 0.031 >= 0.03)"),
    ("chen2007", difference(-0.02, 0.0, 0.029), True, "within the rule"),
    ("chen2007", difference(-0.009, 0.5, 0.5), True, "within the rule"),
    ("chen2007", difference(-0.01, 0.015, 0.0), False,
     "dCFI -0.01 <= -0.01 and (dRMSEA 0.015 >= 0.015 or dSRMR 0 >= 0.03)"),  # unrounded
    ("chen2007", difference(-0.02, math.nan, 0.05), False,
     "dCFI -0.02 <= -0.01 and (dRMSEA NaN >= 0.015 or dSRMR 0.05 >= 0.03)"),  # nan: R's NaN
    ("chen2007", difference(math.nan, 0.5, 0.5), False,
     "the index the rule needs is not available"),
    ("chen2007", difference(-0.5, 0.5, 0.5, usable=False), False, "a model did not converge"),
    ("cheung_rensvold2002", difference(-0.02, 0.0, 0.0), False, "dCFI -0.02 <= -0.01"),
    ("cheung_rensvold2002", difference(-0.005, 0.9, 0.9), True, "within the rule"),
    ("lrt", difference(lrt_pvalue=0.01), False, "LRT p 0.01 < 0.05"),
    ("lrt", difference(-0.5, lrt_pvalue=0.05), True, "within the rule"),
    ("lrt", difference(lrt_pvalue=math.nan), False, "the index the rule needs is not available"),
]  # fmt: skip


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_r_judges_each_rule_from_its_criteria():
    """One R process, no lavaan fit: vaar_judge applies each rule's criteria table."""
    from vaar.sem import bridge

    for rule, diff, holds, reason in JUDGED:
        criteria = r_tables(["configural"], rule, ordinal=False, equal_paths=False)["criteria"]
        verdict = bridge.call("vaar_judge", diff, criteria, LIMITS)
        assert verdict == {"holds": holds, "reason": reason}, (rule, diff)


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_the_bundle_arguments_read_back_in_r(tmp_path):
    """What the bundle writes, r/call.R reads back with the types the bridge passes."""
    from vaar.sem import bridge
    from vaar.sem.bundle import _write_arguments

    args = {"group": "school, district", "estimator": "MLR", "ordered": [], "partial": True,
            "max_free": 10, "seed": 7, "thresholds": {"cfi": 0.01, "alpha": 1 / 3},
            "ladder": pd.DataFrame({"level": ["configural"], "equal": [""]}),
            "names": ["x1", "x.2"]}  # fmt: skip
    _write_arguments(tmp_path, args)
    back = bridge.call("vaar_read_call", str(tmp_path))
    assert back["group"] == "school, district" and back["estimator"] == "MLR"
    assert back["ordered"] == []  # character(0)
    assert back["partial"] is True
    assert (back["max_free"], back["seed"]) == (10, 7) and type(back["seed"]) is int
    assert back["thresholds"] == {"cfi": 0.01, "alpha": 1 / 3}  # exact, not rounded
    assert back["ladder"].to_dict("records") == [{"level": "configural", "equal": ""}]
    assert back["names"] == ["x1", "x.2"]
