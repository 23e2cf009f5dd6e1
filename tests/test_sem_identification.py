"""Honest identification: a level that did not converge or is not identified never holds, and
the decision names the levels it could not judge, in words (tables of cases, no R), plus one
real lavaan fit of a non-identified model (one factor, two indicators) through the report."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from vaar.sem.identification import LRT_FAILED, NOT_IDENTIFIED, judge

LEVELS = ["configural", "metric", "scalar", "strict"]


def fits(converged: dict) -> pd.DataFrame:
    return pd.DataFrame({"level": list(converged), "converged": list(converged.values())})


def flags(*levels) -> pd.DataFrame:
    return pd.DataFrame(
        {"level": list(levels), "flag": "not_identified", "detail": "lavaan WARNING: ..."}
    )


def comparisons(*rows) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"from": a, "to": b, "holds": holds, "reason": reason, "lrt_error": error}
            for a, b, holds, reason, error in rows
        ]
    )


OK = (True, "within the rule", None)


@pytest.mark.parametrize(
    "converged, bad_flags, highest, expected, judged",
    [
        # all fine: R's decision stands
        ({lv: True for lv in LEVELS}, (), "strict", "strict", []),
        # configural not identified: nothing holds, every level above is not judged
        ({lv: True for lv in LEVELS}, ("configural",), "strict", None, LEVELS),
        # metric not identified: configural is the highest; scalar compared with metric
        ({lv: True for lv in LEVELS}, ("metric",), "scalar", "configural",
         ["metric", "scalar", "strict"]),
        # scalar did not converge (R already stopped at metric)
        ({"configural": True, "metric": True, "scalar": False, "strict": True}, (), "metric",
         "metric", ["scalar", "strict"]),
        # configural did not converge
        ({"configural": False, "metric": True}, (), None, None, ["configural", "metric"]),
        # a partial level sits where its full level does
        ({"configural": True, "metric": True, "scalar": True, "scalar_partial": True},
         ("scalar_partial",), "scalar_partial", "metric", ["scalar_partial"]),
    ],
)  # fmt: skip
def test_unusable_levels_never_hold(converged, bad_flags, highest, expected, judged):
    levels = list(converged)
    rows = [(a, b, *OK) for a, b in zip(levels, levels[1:], strict=False)]
    decision = {"highest": highest, "levels_tested": LEVELS, "rule": "chen2007"}
    out, table = judge(decision, fits(converged), comparisons(*rows), flags(*bad_flags))
    assert out["highest"] == out["level"] == expected
    assert [n["level"] for n in out["not_judged"]] == judged
    for n in out["not_judged"]:
        assert n["reason"].startswith(("the ", "it is compared with the ", "a level below it ("))
    spoiled = table[table["to"].isin(judged)]
    assert not spoiled["holds"].any()
    assert spoiled["reason"].str.startswith("not judged: ").all()
    unusable = set(bad_flags) | {lv for lv, ok in converged.items() if not ok}
    touched = table[table["to"].isin(unusable) | table["from"].isin(unusable)]
    assert touched["lrt_error"].str.startswith("not computed: ").all()
    assert table.loc[~table.index.isin(touched.index), "lrt_error"].isna().all()


def test_reasons_are_words_not_r_messages():
    converged = {"configural": True, "metric": True, "scalar": True}
    table = comparisons(
        ("configural", "metric", False, "the index the rule needs is not available",
         "subscript out of bounds"),
        ("metric", "scalar", True, "within the rule", "object 'x' not found"),
    )  # fmt: skip
    decision = {"highest": "configural", "levels_tested": LEVELS[:3]}
    out, table = judge(decision, fits(converged), table, flags())
    assert out["highest"] == "configural"
    assert out["not_judged"] == [
        {"level": "metric", "reason": "lavaan gave no value for a fit index the rule compares "
         "(CFI, RMSEA or SRMR)"}
    ]  # fmt: skip
    assert list(table["lrt_error"]) == [LRT_FAILED, LRT_FAILED]
    assert "subscript" not in " ".join(map(str, table.to_numpy().ravel()))


def two_indicators(seed=1, n=200) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for g in ("a", "b"):
        f = rng.standard_normal(n)
        noise = rng.standard_normal((n, 2)) * 0.5
        frames.append(pd.DataFrame({"g": g, "x1": f + noise[:, 0], "x2": f + noise[:, 1]}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_a_non_identified_model_holds_no_level(tmp_path):
    from vaar.pipeline import analyze_model
    from vaar.report import write_report

    result = analyze_model(two_indicators(), "F =~ x1 + x2\n", "g", name="ident",
                           echo=lambda _: None)  # fmt: skip
    sem = result.sem
    assert sem.decision["highest"] is None
    judged = {n["level"]: n["reason"] for n in sem.decision["not_judged"]}
    assert judged["configural"] == f"the configural model {NOT_IDENTIFIED}"
    assert not sem.comparisons["holds"].any()
    assert "subscript out of bounds" not in sem.comparisons.to_string()
    html = write_report(tmp_path, result).read_text(encoding="utf-8")
    assert "No invariance level holds" in html and 'id="not-judged"' in html
    assert "subscript out of bounds" not in html.split('id="diagnostics"')[0]
