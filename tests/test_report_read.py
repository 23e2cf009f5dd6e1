"""estimates.json read back into a StudyResult (vaar.report.read_estimates): the document is one
type in memory and on disk, so building the document again from what was read gives the same
document. Here on study results put together from hand-built SEM tables (no R); the real
analyses in test_report.py, test_report_e2e.py and test_pipeline.py go through the same check
(`assert_reads_back`)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pandas as pd
import pytest
from test_alignment_scores import PATHS, estimates

from vaar.alignment import align, load_reference, profiles
from vaar.alignment.simulate import long_from_wide, simulate_wide
from vaar.collection.summary import CollectionSummary
from vaar.errors import VaarError
from vaar.instruments import load_instrument
from vaar.report import build_estimates, read_estimates
from vaar.report.read import study_result
from vaar.result import StudyResult
from vaar.sem.model import VaarModel
from vaar.sem.result import SemResult

MODELS = {"humans": (-0.5, 0.5), "aligned": (-0.5, 0.5), "reversed": (0.5, -0.5)}


def assert_reads_back(path) -> StudyResult:
    """read_estimates(path) is a StudyResult whose document is the file's document again (only
    the time it was generated differs); returns it."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    back = read_estimates(path)
    again = build_estimates(back)
    assert again["generated"]["by"] == doc["generated"]["by"]
    for d in (doc, again):
        d["generated"].pop("utc")
    assert again == doc
    assert json.dumps(again, ensure_ascii=False) == json.dumps(doc, ensure_ascii=False)
    return back


def sem_result(rows=None) -> SemResult:
    """A SemResult in vaar.sem's contract: configural and metric estimates per model."""
    est = pd.concat(
        [
            estimates(
                rows
                or [
                    ("humans", "IUIPC", -0.3, 0.1),
                    ("humans", "PSA", 0.2, 0.1),
                    ("aligned", "IUIPC", -0.4, 0.1),
                    ("aligned", "PSA", 0.3, 0.1),
                    ("reversed", "IUIPC", 0.4, 0.1),
                    ("reversed", "PSA", -0.3, 0.1),
                    ("broken", "IUIPC", 0.1, math.nan),
                    ("broken", "PSA", 0.1, 0.1),
                ]
            ),  # fmt: skip
            estimates([("aligned", "IUIPC", -0.4, 0.2), ("aligned", "PSA", 0.3, 0.2)], "metric"),
        ],
        ignore_index=True,
    )
    fits = pd.DataFrame(
        {"level": ["configural", "metric"], "converged": [True, True], "npar": [40, 34],
         "cfi": [0.97, 0.96], "rmsea": [0.04, math.inf], "srmr": [0.05, math.nan]}
    )  # fmt: skip
    comparisons = pd.DataFrame(
        [{"from": "configural", "to": "metric", "d_cfi": -0.01, "holds": True, "reason": "ok"}]
    )
    return SemResult(
        estimates=est,
        fits=fits,
        comparisons=comparisons,
        decision={
            "highest": "metric",
            "rule": "chen2007",
            "thresholds": {"cfi": 0.01},
            "freed": [],
            "levels_tested": ["metric"],
            "level": "metric",
        },  # fmt: skip
        diagnostics={
            "dropped_items": [{"item": "psa09", "reason": "zero variance"}],
            "excluded_groups": [{"group": "silent", "reason": "item psa01 constant"}],
            "dropped_factors": [],
            "degenerate_strategy": "drop_items",
            "warnings": ["configural: a warning <b>with markup</b>"],
            "errors": [],
            "flags": [{"level": "metric", "flag": "heywood", "detail": "PSA"}],
            "missing": "fiml",
        },
        lavaan_output={"configural": "lavaan 0.6-14 ended normally"},
        versions={"lavaan": "0.6.14"},
        group_fits=pd.DataFrame(
            {
                "level": ["configural"] * 2,
                "group": ["aligned", "reversed"],
                "chisq": [10.5, np.float64(12.25)],
            }
        ),  # fmt: skip
        estimator="MLR",
    )


def tables(instruments):
    wide = simulate_wide(MODELS, instruments, sessions=30, seed=3)
    long, wide = long_from_wide(wide, instruments, seed=4)
    picks = long.sample(4, random_state=1).index
    long.loc[picks, ["raw", "value", "status"]] = ["I'd rather not say. " * 30, np.nan, "refused"]
    return long, wide


def analysed(*, human_group=None, collection=None, user_model=False) -> StudyResult:
    instruments = [load_instrument(i) for i in ("iuipc10", "psa", "aods")]
    long, wide = tables(instruments)
    sem = sem_result()
    if user_model:
        alignment = profile = None
        model = "X =~ x1 + x2\nY =~ y1 + y2\nY ~ X\n"
    else:
        alignment = align(sem, PATHS, load_reference(), human_group=human_group)
        profile = profiles(long, wide, instruments)
        model = VaarModel("AoDS ~ IUIPC + PSA\n", list(PATHS), ["iuipc_ctrl1"])
    return StudyResult.from_analysis(
        name="hand-built",
        study=None,
        instruments=[] if user_model else instruments,
        wide=wide,
        long=None if user_model else long,
        collection=collection,
        model=model,
        sem=sem,
        alignment=alignment,
        profiles=profile,
        provenance={"vaar_version": "test", "seed": None, "r": {"lavaan": "0.6.14"}},
        timings={"lavaan multi-group SEM": 1.5},
    )


COLLECTED = CollectionSummary(
    None,
    models={
        "aligned": {
            "sessions": 30,
            "done": 29,
            "failed": 1,
            "incomplete": 0,
            "answers": {"ok": 1100, "refused": 40},
            "prompt_tokens": 9,
            "cost": 0.5,
        },
        "reversed": {
            "sessions": 30,
            "done": 30,
            "failed": 0,
            "incomplete": 0,
            "answers": {},
            "prompt_tokens": 0,
            "cost": 0.0,
        },
    },  # fmt: skip
    incomplete=["aligned: 1 session(s) failed (rerun with --retry-errors)"],
    stopped="max cost reached",
    elapsed=12.5,
)
CASES = {
    "counted from the tables": {},
    "collected": {"collection": COLLECTED},
    "human group": {"human_group": "humans"},
    "user model": {"user_model": True},
}


@pytest.mark.parametrize("case", CASES)
def test_a_written_document_reads_back_into_the_same_document(case, tmp_path):
    path = tmp_path / "estimates.json"
    doc = build_estimates(analysed(**CASES[case]))
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")
    back = assert_reads_back(path)
    assert back.name == "hand-built" and back.study.n_sessions == 90
    assert back.sem.lavaan_output == {} and back.sem.data is None  # not stored
    assert back.collection.store_path is None
    assert (back.alignment is None) == (back.profiles is None) == (case == "user model")


def test_what_is_read_back_are_the_stage_types_with_their_numbers():
    result = analysed(human_group="humans", collection=COLLECTED)
    back = study_result(build_estimates(result))
    columns = ["level", "group", "lhs", "op", "rhs", "est", "se", "z", "pvalue"]
    pd.testing.assert_frame_equal(back.sem.estimates[columns], result.sem.estimates[columns])
    assert back.sem.decision == result.sem.decision
    assert back.sem.diagnostics["excluded_groups"] == [
        {"group": "silent", "reason": "item psa01 constant"}
    ]
    assert [tuple(p) for p in back.model.paths] == [tuple(p) for p in PATHS]
    assert back.collection.models["aligned"]["answers"] == {"ok": 1100, "refused": 40}
    assert back.collection.unscored_examples == result.collection.unscored_examples
    assert back.alignment.reference.human_group == "humans"
    assert back.alignment.reference.lookup(PATHS[0]).sign == -1  # the humans' own sign
    scores = back.alignment.scores.set_index("model")["vaar_soft"]
    for model, soft in result.alignment.scores.set_index("model")["vaar_soft"].items():
        assert scores[model] == pytest.approx(soft, rel=1e-15, nan_ok=True)
    assert back.profiles.splits is None  # not stored
    assert list(back.profiles.table["model"]) == list(result.profiles.table["model"])


def test_the_reader_needs_a_vaar_document_and_says_what_is_wrong(tmp_path):
    doc = build_estimates(analysed())
    path = tmp_path / "estimates.json"

    def fails(text_or_bytes, match):
        if isinstance(text_or_bytes, bytes):
            path.write_bytes(text_or_bytes)
        else:
            path.write_text(text_or_bytes, encoding="utf-8")
        with pytest.raises(VaarError, match=match) as error:
            read_estimates(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)

    with pytest.raises(VaarError, match="cannot read"):
        read_estimates(tmp_path / "missing.json")
    with pytest.raises(VaarError, match="cannot read"):
        read_estimates(tmp_path)  # a folder
    fails("{not json", "not valid JSON")
    fails(b"\xff\xfe{}", "cannot read")
    fails("[]", "does not match its schema at")
    fails(json.dumps({"estimates": []}), "'schema_version' is a required property")
    broken = copy.deepcopy(doc)
    broken["alignment"]["scores"][0]["vaar_soft"] = 2
    fails(json.dumps(broken), r"alignment/scores/0/vaar_soft: 2 is greater")
    broken = copy.deepcopy(doc)
    broken["study"]["planet"] = "Mars"  # the schema lets rows carry more; the type does not
    fails(json.dumps(broken), "not an estimates.json written by vaar")
    broken = copy.deepcopy(doc)
    del broken["collection"]["elapsed"]
    fails(json.dumps(broken), "not an estimates.json written by vaar.*elapsed")
