"""Identification-invariant sign evidence (analysis.evidence = "lrt"), real lavaan throughout.

VAAR from the signed likelihood-ratio z is the same under two marker choices and under std.lv,
while the Wald VAAR is not; the LR z's equal plain lavaan refits + lavTestLRT run by Rscript; a
degenerate group stays excluded with its reason, a failing refit leaves its paths not estimable
with lavaan's reason; a partial level (scalar_partial) is refitted with its freed parameters in
the bootstrap. Small data: 3 items per factor, 150 sessions per model.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from vaar.alignment import align, load_reference, refit_executor
from vaar.alignment.lrt import _signed
from vaar.alignment.simulate import short_instruments, simulate_wide
from vaar.config import AnalysisSpec
from vaar.data import score_items
from vaar.errors import ConfigError, VaarError
from vaar.instruments import load_instruments
from vaar.sem import build_vaar_model, fit_ladder
from vaar.sem.grammar import check_model
from vaar.sem.lrt import LRT_METHODS, PathTest, freed_at, level_model, restricted_syntax

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
PLANTED = {"aligned": (-0.45, 0.4), "reversed": (0.4, -0.35), "mixed": (-0.3, -0.25)}
METRICS = ["vaar_soft", "vaar_hard", "vaar_logloss"]


@pytest.fixture(scope="module")
def instruments():
    return short_instruments(load_instruments(["iuipc10", "psa", "aods"]))


@pytest.fixture(scope="module")
def model(instruments):
    return build_vaar_model(instruments)


@pytest.fixture(scope="module")
def scored(instruments):
    wide = simulate_wide(PLANTED, instruments, sessions=150, seed=11)
    return score_items(wide, instruments)


@pytest.fixture(scope="module")
def pool():
    with refit_executor(workers=2) as executor:
        yield executor


def identifications(model) -> dict[str, str]:
    """The vaar model under three identifications of its factors: vaar's first-indicator
    markers, the last indicator as marker, and std.lv written as syntax (free loadings,
    factor or residual variances fixed at 1)."""
    regressions = [line for line in model.syntax.splitlines() if " ~ " in line]
    marker_last = [f"{f} =~ " + " + ".join(items[::-1]) for f, items in model.factors.items()]
    std_lv = [
        f"{f} =~ NA*{items[0]} + " + " + ".join(items[1:]) for f, items in model.factors.items()
    ]
    std_lv += [f"{f} ~~ 1*{f}" for f in model.factors]
    return {
        "marker_first": model.syntax,
        "marker_last": "\n".join(marker_last + regressions) + "\n",
        "std_lv": "\n".join(std_lv + regressions) + "\n",
    }


def fit(scored, syntax, estimator, **how):
    return fit_ladder(scored, syntax, "model", estimator=estimator, levels=["configural"], **how)


@pytest.mark.parametrize("estimator", ["MLR", "ML"])
def test_lrt_vaar_is_the_same_under_every_identification_wald_is_not(
    scored, model, pool, estimator
):
    scores = {}
    for name, syntax in identifications(model).items():
        sem = fit(scored, syntax, estimator)
        for evidence in ("wald", "lrt"):
            result = align(sem, model.paths, load_reference(), evidence=evidence, executor=pool)
            scores[name, evidence] = result.scores.set_index("model")[METRICS]
            assert result.to_dict()["evidence"]["method"] == evidence
    lrt = scores["marker_first", "lrt"]
    assert lrt["vaar_soft"].notna().all()
    for name in ("marker_last", "std_lv"):
        same = scores[name, "lrt"]
        np.testing.assert_allclose(same[METRICS[:2]], lrt[METRICS[:2]], rtol=0, atol=1e-6)
        # -log(c) magnifies the optimizer's tolerance where c is small (a clearly reversed
        # path): MLR's scaled difference agrees to ~3e-6 relative across identifications
        np.testing.assert_allclose(same["vaar_logloss"], lrt["vaar_logloss"], rtol=1e-5)
    wald = scores["marker_first", "wald"]["vaar_soft"]
    moved = (scores["marker_last", "wald"]["vaar_soft"] - wald).abs().max()
    assert moved > 1e-3, f"the Wald VAAR_soft moved only {moved} with the marker"


R_SCRIPT = r"""
suppressPackageStartupMessages(library(lavaan))
args <- commandArgs(TRUE)
d <- read.csv(args[1], stringsAsFactors = FALSE)
spec <- readLines(args[2])
model <- paste(readLines(args[3]), collapse = "\n")
estimator <- spec[1]; method <- spec[2]; std_lv <- spec[3] == "TRUE"
groups <- unique(d$model)
fit0 <- sem(model, d, group = "model", estimator = estimator, std.lv = std_lv,
            information = "expected")
pe <- parameterEstimates(fit0)
for (g in seq_along(groups)) for (rhs in c("IUIPC_CTRL", "PSA")) {
  vec <- paste0("c(", paste(ifelse(seq_along(groups) == g, "0", "NA"), collapse = ","), ")")
  restricted <- sub(paste0("AoDS ~ (.*)\\b", rhs, "\\b"), paste0("AoDS ~ \\1", vec, "*", rhs),
                    model, perl = TRUE)
  fit1 <- sem(restricted, d, group = "model", estimator = estimator, std.lv = std_lv,
              information = "expected")
  chisq <- lavTestLRT(fit0, fit1, method = method)[2, "Chisq diff"]
  b <- pe$est[pe$op == "~" & pe$rhs == rhs & pe$group == g]
  cat(groups[g], rhs, sprintf("%.12f", sign(b) * sqrt(max(chisq, 0))), "\n")
}
"""


@pytest.mark.parametrize("estimator", ["MLR", "ML"])
def test_lr_z_equals_plain_lavaan_refits_and_lavtestlrt(scored, model, pool, estimator, tmp_path):
    sem = fit(scored, model.syntax, estimator)
    result = align(sem, model.paths, load_reference(), evidence="lrt", executor=pool)
    data = tmp_path / "data.csv"
    sem.data.to_csv(data, index=False)
    (tmp_path / "model.lav").write_text(model.syntax)
    (tmp_path / "fit.R").write_text(R_SCRIPT)
    zs = {}
    for std_lv in ("FALSE", "TRUE"):  # lavaan's own std.lv = TRUE option this time
        (tmp_path / "spec.txt").write_text(f"{estimator}\n{LRT_METHODS[estimator]}\n{std_lv}\n")
        out = subprocess.run(
            ["Rscript", str(tmp_path / "fit.R"), str(data), str(tmp_path / "spec.txt"),
             str(tmp_path / "model.lav")],
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout  # fmt: skip
        zs[std_lv] = {
            (g, rhs): float(z) for g, rhs, z in (line.split() for line in out.splitlines())
        }
    ev = result.evidence.set_index(["model", "rhs"])
    assert len(zs["FALSE"]) == len(ev) == 6
    for key, z in zs["FALSE"].items():
        assert ev.loc[key, "z"] == pytest.approx(z, abs=1e-6)
        assert ev.loc[key, "lr_chisq"] == pytest.approx(z * z, abs=1e-6)
        assert np.sign(ev.loc[key, "wald_z"]) == np.sign(z)
    # VAAR_soft from plain lavaan's std.lv = TRUE refits is vaar's (marker) LRT VAAR
    signs = ev["expected_sign"].to_numpy(float)
    std = np.array([zs["TRUE"][key] for key in ev.index])
    soft = pd.Series(norm.cdf(signs * std), index=ev.index).groupby(level="model").mean()
    mine = result.scores.set_index("model")["vaar_soft"]
    np.testing.assert_allclose(mine.loc[soft.index], soft, rtol=0, atol=1e-6)


def test_a_degenerate_group_stays_excluded_with_its_reason(scored, model, pool, instruments):
    flat = scored[scored["model"] == "aligned"].assign(model="flat")
    flat.loc[:, [c for c in flat.columns if c not in ("model", "session")]] = 3.0
    sem = fit(pd.concat([scored, flat], ignore_index=True), model.syntax, "MLR")
    result = align(sem, model.paths, load_reference(), evidence="lrt", executor=pool)
    scores = result.scores.set_index("model")
    assert math.isnan(scores.loc["flat", "vaar_soft"])
    assert "excluded by vaar.sem" in scores.loc["flat", "note"]
    assert scores.drop(index="flat")["vaar_soft"].notna().all()
    assert result.evidence_info.refits == 6  # the three fitted models x 2 paths, not flat


def test_a_failing_refit_makes_its_paths_not_estimable_with_lavaans_reason(scored, model, pool):
    sem = fit(scored, model.syntax, "MLR")
    broken = replace_data(sem, "reversed")  # a variable without variance in one group
    result = align(broken, model.paths, load_reference(), evidence="lrt", executor=pool)
    scores = result.scores.set_index("model")
    assert scores["vaar_soft"].isna().all()  # the unrestricted refit fails for every group
    assert "could not be fitted" in scores.loc["aligned", "note"]
    assert "no variance" in scores.loc["aligned", "note"]
    # a test that failed while the others did not: only its path is not estimable
    row = result.evidence.iloc[0].copy()
    row["wald_z"], row["z_se"], row["est"] = 2.0, 0.1, 0.2
    values = _signed(row, PathTest("aligned", row["lhs"], row["rhs"], error="lavaan: boom"), 0.05)
    assert math.isnan(values["evidence"]) and "lavaan: boom" in values["note"]
    good = _signed(
        row, PathTest("aligned", row["lhs"], row["rhs"], chisq_diff=4.0, pvalue=0.0455), 0.05
    )
    assert good["z"] == 2.0 and good["z_se"] == pytest.approx(0.1)


def replace_data(sem, group):
    """A copy of a vaar.sem result whose data make lavaan fail: one item constant in `group`."""
    data = sem.data.copy()
    data.loc[data["model"] == group, "psa01"] = 3.0
    broken = replace(sem)
    broken.data = data
    return broken


def test_restricted_models_are_vaars_own_and_pass_the_allow_list(model):
    text = restricted_syntax(model.syntax, "AoDS", "PSA", 1, 3)
    assert "AoDS ~ IUIPC_CTRL + c(NA, 0, NA)*PSA" in text
    assert check_model(text) == text
    with pytest.raises(VaarError, match="no regression AoDS ~ nothing"):
        restricted_syntax(model.syntax, "AoDS", "nothing", 0, 3)
    labelled = model.syntax.replace("AoDS ~ IUIPC_CTRL", "AoDS ~ b1*IUIPC_CTRL")
    with pytest.raises(VaarError, match="carries a modifier"):
        restricted_syntax(labelled, "AoDS", "IUIPC_CTRL", 0, 3)


def test_evidence_is_an_analysis_option_with_a_clear_error():
    assert AnalysisSpec().evidence == "wald"
    assert AnalysisSpec(evidence="lrt").evidence == "lrt"
    from vaar.config import parse_study

    models = [{"name": "m", "provider": "simulated"}]
    study = {"name": "s", "sessions_per_model": 1, "instruments": ["psa"], "models": models}
    study["analysis"] = {"evidence": "x"}
    with pytest.raises(ConfigError, match="analysis.evidence"):
        parse_study(study)
    with pytest.raises(VaarError, match="unknown sign evidence"):
        align(None, [], evidence="score")


def shifted(scored: pd.DataFrame, item: str, group: str, by: float) -> pd.DataFrame:
    """One item's intercept moved in one group: scalar invariance fails for that item only."""
    out = scored.copy()
    rows = out["model"] == group
    out.loc[rows, item] = (out.loc[rows, item] + by).clip(upper=5)
    return out


def test_a_partial_highest_level_is_bootstrapped_with_its_freed_parameters(scored, model, pool):
    data = shifted(scored[scored["model"] != "mixed"], "psa02", "reversed", 1.5)
    sem = fit_ladder(data, model.syntax, "model", levels=["configural", "metric", "scalar"],
                     partial=True)  # fmt: skip
    assert sem.decision["highest"] == "scalar_partial", sem.decision
    freed = freed_at(sem, "scalar_partial")
    assert freed == list(sem.decision["freed"]) and "psa02~1" in freed
    assert level_model(sem, "scalar_partial").partial == tuple(freed)
    assert level_model(sem, "scalar_partial").equal == ("loadings", "intercepts")
    result = align(sem, model.paths, load_reference(), level="highest", evidence="lrt",
                   bootstrap=2, executor=pool, seed=3)  # fmt: skip
    assert result.level == "scalar_partial"
    assert result.scores["vaar_soft"].notna().all()
    boot = result.bootstrap
    assert boot.failed_fits == [], boot.failed_fits
    assert (boot.intervals["draws_ok"] == 2).all(), boot.intervals.to_dict("records")
    json.dumps(result.to_dict(), allow_nan=True)
