"""Profiles: scores, reliability and response styles, checked against independent computations
(pandas by hand, and lavaan + semTools run by plain Rscript on the same data)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from vaar.alignment import profiles
from vaar.alignment.reliability import cronbach_alpha, mcdonald_omega
from vaar.alignment.simulate import long_from_wide, simulate_wide
from vaar.instruments import load_instrument

INSTRUMENTS = [load_instrument(i) for i in ("iuipc10", "psa", "aods")]
MODELS = {"aligned": (-0.5, 0.5), "reversed": (0.5, -0.5)}
SHIFTS = {"aligned": {"privacy": 0.8}, "reversed": {"prosocial": -0.8}}


@pytest.fixture(scope="module")
def tables():
    wide = simulate_wide(MODELS, INSTRUMENTS, sessions=150, shifts=SHIFTS, seed=3)
    long, wide = long_from_wide(wide, INSTRUMENTS, invalid=0.02, seed=4)
    return long, wide


@pytest.fixture(scope="module")
def result(tables):
    long, wide = tables
    return profiles(long, wide, INSTRUMENTS, splits=10, seed=5)


def scored_items(wide, inst, factor="*"):
    """Hand scoring: reverse-keyed items become min + max - raw."""
    items = [i for i in inst.items if factor == "*" or i.factor == factor]
    out = pd.DataFrame({i.id: wide[i.id] for i in items})
    for i in items:
        if i.reverse:
            out[i.id] = inst.scale_min + inst.scale_max - out[i.id]
    return out


def test_scores_and_response_styles_match_hand_computation(tables, result):
    long, wide = tables
    aods = INSTRUMENTS[2]
    assert any(i.reverse for i in aods.items)
    for model, data in wide.groupby("model"):
        mine = result.table[result.table["model"] == model]
        row = mine[mine["instrument"] == "aods"].iloc[0]
        session_means = scored_items(data, aods).mean(axis=1)  # pandas skips NaN
        assert row["mean"] == pytest.approx(session_means.mean())
        assert row["sd"] == pytest.approx(session_means.std())
        raw = data[[i.id for i in aods.items]].to_numpy().ravel()
        raw = raw[~np.isnan(raw)]
        assert row["acquiescence"] == pytest.approx(((raw - 1) / 4).mean())
        assert row["extreme"] == pytest.approx(np.isin(raw, [1, 5]).mean())
        statuses = long.query("model == @model and instrument == 'aods'")["status"]
        assert row["invalid_share"] == pytest.approx((statuses == "invalid").mean())
        assert row["refused_share"] == 0.0
        assert row["n_items"] == 12 and row["n_sessions"] == 150
    # instrument rows (factor "*") and one row per IUIPC subscale
    iuipc = result.table.query("model == 'aligned' and instrument == 'iuipc10'")
    assert list(iuipc["factor"]) == ["*", "IUIPC_CTRL", "IUIPC_AWA", "IUIPC_COLL"]


def test_straightlining_and_position_effects_are_detected():
    psa = [INSTRUMENTS[1]]
    wide = simulate_wide({"m": (0, 0)}, [*INSTRUMENTS], sessions=60, seed=1)
    items = [i.id for i in psa[0].items]
    wide.loc[:29, items] = 4.0  # half the sessions answer every PSA item with 4
    long, wide = long_from_wide(wide, INSTRUMENTS, seed=2)
    # a planted drift: later positions get higher answers in the long table
    drift = long["instrument"] == "psa"
    long.loc[drift, "value"] = long.loc[drift, "position"].clip(upper=5).astype(float)
    table = profiles(long, wide, INSTRUMENTS, splits=4).table.set_index("instrument")
    assert table.loc["psa", "straightlining"] == pytest.approx(0.5)
    assert table.loc["psa", "position_r"] > 0.5
    assert abs(table.loc["aods", "position_r"]) < 0.15


def test_profiles_are_stable_and_model_specific(result):
    stability = result.stability.set_index("model")
    assert (stability["n_splits"] == 10).all()
    assert (stability["self_match"] == 1.0).all()  # planted: different factor means
    assert result.table["split_half_diff"].max() < 0.5
    data = result.to_dict()
    json.dumps(data)  # JSON-ready, NaN as None
    assert data["seed"] == 5 and len(data["table"]) == len(result.table)


def test_split_half_is_seeded(tables):
    long, wide = tables
    a = profiles(long, wide, INSTRUMENTS, splits=3, seed=9).table["split_half_diff"]
    b = profiles(long, wide, INSTRUMENTS, splits=3, seed=9).table["split_half_diff"]
    pd.testing.assert_series_equal(a, b)


def test_unanswered_items_and_sessions_give_nan_without_warnings(tables, recwarn):
    """A model that never answered one instrument (and sessions with no answer at all) get NaN
    scores and reasons, not numpy's 'Mean of empty slice' warnings."""
    long, wide = tables
    wide = wide.copy()
    aods = [item.id for item in INSTRUMENTS[2].items]
    wide.loc[wide["model"] == "reversed", aods] = np.nan
    table = profiles(long, wide, INSTRUMENTS, splits=3).table
    silent = table.query("model == 'reversed' and instrument == 'aods' and factor == '*'")
    assert silent["mean"].isna().all() and (silent["n_sessions"] == 0).all()
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_reliability_edge_cases():
    assert math.isnan(cronbach_alpha(np.ones((10, 3))))
    omega, note = mcdonald_omega(np.column_stack([np.arange(10.0)] * 2))
    assert math.isnan(omega) and "3 varying items" in note
    x = np.random.default_rng(0).normal(size=(50, 4))
    x[:, 3] = 2.0
    assert "1 constant item(s) left out" in mcdonald_omega(x)[1]


R_CHECK = r"""
suppressMessages({library(lavaan); library(semTools)})
d <- read.csv(commandArgs(TRUE)[1])
items <- names(d)
fit <- cfa(paste("f =~", paste(items, collapse = " + ")), d, std.lv = TRUE, estimator = "ML")
omega <- compRelSEM(fit, obs.var = FALSE)
k <- length(items)
alpha <- k / (k - 1) * (1 - sum(apply(d, 2, var)) / var(rowSums(d)))
cat(sprintf("%.10f %.10f %.10f", omega, alpha, mean(rowMeans(d))))
"""


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R (scripts/setup.sh)")
@pytest.mark.parametrize(("model", "instrument"), [("aligned", "aods"), ("reversed", "psa")])
def test_omega_and_alpha_equal_semtools_on_the_same_data(tables, tmp_path, model, instrument):
    long, wide = tables
    inst = next(i for i in INSTRUMENTS if i.id == instrument)
    data = scored_items(wide[wide["model"] == model], inst).dropna()
    csv = tmp_path / "items.csv"
    data.to_csv(csv, index=False)
    script = tmp_path / "check.R"
    script.write_text(R_CHECK)
    out = subprocess.run(
        ["Rscript", str(script), str(csv)], capture_output=True, text=True, check=True
    ).stdout.split()
    omega_r, alpha_r, _ = map(float, out)
    x = data.to_numpy(float)
    assert mcdonald_omega(x)[0] == pytest.approx(omega_r, abs=1e-5)
    assert cronbach_alpha(x) == pytest.approx(alpha_r, abs=1e-10)
    # the profile table computes both on the same complete cases
    row = profiles(None, wide, INSTRUMENTS, splits=2).table.query(
        "model == @model and instrument == @instrument"
    )
    assert row["omega"].iloc[0] == pytest.approx(omega_r, abs=1e-5)
    assert row["alpha"].iloc[0] == pytest.approx(alpha_r, abs=1e-10)
