"""VAAR on data with planted paths, fitted by real lavaan (vaar.sem), and its bootstrap on both
executors: local spawned workers (one R each) and a Dask cluster on loopback.

The model is a 3-items-per-factor cut of the vaar model so each refit takes about a second."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vaar.alignment import align, bootstrap_vaar, load_reference, refit_executor
from vaar.alignment.bootstrap import refit_draw
from vaar.alignment.result import refit_spec
from vaar.alignment.simulate import measure_coverage, short_instruments, simulate_wide
from vaar.data import score_items
from vaar.errors import VaarError
from vaar.instruments import load_instrument

INSTRUMENTS = [load_instrument(i) for i in ("iuipc10", "psa", "aods")]
FACTORS = {"IUIPC": "iuipc10", "PSA": "psa", "AoDS": "aods"}
PATHS = [("AoDS", "IUIPC", "privacy"), ("AoDS", "PSA", "prosocial")]
PLANTED = {"aligned": (-0.8, 0.8), "reversed": (0.8, -0.8), "null": (0.0, 0.0)}


def small_syntax(k: int = 3) -> str:
    """The vaar model's structure with the first k items of each instrument."""
    by_id = {i.id: i for i in INSTRUMENTS}
    lines = [
        f"{factor} =~ " + " + ".join(item.id for item in by_id[inst].items[:k])
        for factor, inst in FACTORS.items()
    ]
    return "\n".join([*lines, "AoDS ~ IUIPC + PSA"])


def planted_data(models: dict, sessions: int, seed: int) -> pd.DataFrame:
    return score_items(
        simulate_wide(models, INSTRUMENTS, sessions=sessions, seed=seed), INSTRUMENTS
    )


@pytest.fixture(scope="module")
def fitted():
    from vaar.sem import fit_ladder

    data = planted_data(PLANTED, sessions=150, seed=1)
    # "fragile": one item answered 3 by every session but one, so some resamples make it
    # constant; with degenerate="exclude_group" vaar.sem then leaves the model out of that draw
    fragile = planted_data({"fragile": (-0.5, 0.5)}, sessions=60, seed=12)
    fragile["psa02"] = 3.0
    fragile.loc[0, "psa02"] = 4.0
    data = pd.concat([data, fragile], ignore_index=True)
    sem = fit_ladder(
        data, small_syntax(), "model", levels=["configural"], degenerate="exclude_group",
        equal_paths=False,
    )  # fmt: skip
    return sem


@pytest.fixture(scope="module")
def pool():
    """Two local workers, each with its own R, shared by this module's bootstraps."""
    with refit_executor(workers=2) as executor:
        yield executor


@pytest.fixture(scope="module")
def local_result(fitted, pool):
    return align(fitted, PATHS, load_reference(), bootstrap=4, executor=pool, seed=7)


def test_planted_signs_give_vaar_near_one_zero_and_chance(fitted):
    scores = align(fitted, PATHS, load_reference()).scores.set_index("model")
    assert scores.loc["aligned", "vaar_soft"] > 0.95
    assert scores.loc["aligned", "vaar_hard"] == 1.0
    assert scores.loc["reversed", "vaar_soft"] < 0.05
    assert scores.loc["reversed", "vaar_hard"] == 0.0
    # a null model's evidence is Phi(z) with z ~ N(0, 1): uniform, 0.5 on average; one data
    # set only shows it is not decisive either way (the coverage test averages many)
    assert 0.05 < scores.loc["null", "vaar_soft"] < 0.95
    assert scores.loc["null", "vaar_hard"] == 0.0


def test_local_bootstrap_gives_cis_pairwise_differences_and_counts_failures(local_result):
    boot = local_result.bootstrap
    intervals = boot.intervals.set_index("model")
    assert (intervals["draws_ok"] + intervals["draws_failed"] == 4).all()
    for model in ("aligned", "reversed", "null"):
        assert intervals.loc[model, "draws_failed"] == 0
    assert (
        intervals.loc["aligned", "vaar_soft_ci_lower"]
        > intervals.loc["reversed", "vaar_soft_ci_upper"]
    )
    # the fragile model's failed draws are counted, and vaar.sem's reason is given
    assert intervals.loc["fragile", "draws_failed"] >= 1
    assert "zero variance" in intervals.loc["fragile", "failure_reasons"]
    scores = local_result.scores.set_index("model")
    assert (
        scores.loc["aligned", "vaar_soft_ci_lower"] <= scores.loc["aligned", "vaar_soft_ci_upper"]
    )
    pair = boot.pairwise.set_index(["model_a", "model_b"]).loc[("aligned", "reversed")]
    assert pair["vaar_soft_diff"] == pytest.approx(
        scores.loc["aligned", "vaar_soft"] - scores.loc["reversed", "vaar_soft"]
    )
    assert pair["soft_differs"] and pair["vaar_soft_ci_lower"] > 0.5
    data = local_result.to_dict()["bootstrap"]
    assert data["requested"] == 4 and data["failed_fits"] == []
    assert len(data["pairwise"]) == 6  # 4 models, every pair


def test_dask_cluster_on_loopback_gives_the_same_draws(fitted, local_result):
    distributed = pytest.importorskip("distributed")
    import dask

    spec = refit_spec(fitted, PATHS, load_reference(), "configural")
    config = dask.config.set({"distributed.worker.daemon": False})  # workers start R children
    with config:
        cluster = distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None,
        )  # fmt: skip
    with cluster, refit_executor(cluster.scheduler_address) as executor:
        boot = bootstrap_vaar(fitted.data, spec, draws=2, seed=7, executor=executor)
    # draw d is seeded by (seed, d) wherever it runs: the same resample, the same refit
    local = local_result.bootstrap.draws
    local = local[local["draw"] < 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        boot.draws[["draw", "model", "vaar_soft"]], local[["draw", "model", "vaar_soft"]]
    )


def test_a_broken_group_does_not_take_the_other_models_draw_with_it(fitted):
    """lavaan fails a whole joint fit for one group with a singular covariance matrix. vaar.sem
    now excludes such a group before the fit, with its reason, so the draw scores the others,
    and their scores equal a joint fit without the broken group (same resampled sessions)."""
    spec = refit_spec(fitted, PATHS, load_reference(), "configural")
    good = fitted.data[fitted.data["model"].isin(["aligned", "null"])]
    broken = good[good["model"] == "null"].assign(model="broken")
    broken["psa02"] = broken["psa03"] = broken["psa01"]
    with_broken = refit_draw(spec, pd.concat([good, broken], ignore_index=True), seed=3, draw=0)
    without = refit_draw(spec, good, seed=3, draw=0)  # draws the same rows for aligned and null
    scores = pd.DataFrame(with_broken["scores"]).set_index("model")
    expected = pd.DataFrame(without["scores"]).set_index("model")
    assert with_broken["error"] is None
    assert math.isnan(scores.loc["broken", "vaar_soft"])
    assert "excluded by vaar.sem" in scores.loc["broken", "note"]
    assert "covariance matrix is singular" in scores.loc["broken", "note"]
    for model in ("aligned", "null"):  # equal up to the optimizer's convergence tolerance
        for metric in ("vaar_soft", "vaar_hard", "vaar_logloss"):
            assert scores.loc[model, metric] == pytest.approx(expected.loc[model, metric], abs=1e-5)


def test_bad_bootstrap_requests_fail_clearly(fitted):
    spec = refit_spec(fitted, PATHS, load_reference(), "configural")
    with pytest.raises(VaarError, match="draws must be >= 1"):
        bootstrap_vaar(fitted.data, spec, draws=0)
    with pytest.raises(VaarError, match="lacks the group column 'model'"):
        bootstrap_vaar(fitted.data.drop(columns="model"), spec, draws=1)
    with (
        pytest.raises(VaarError, match="cannot reach the Dask scheduler"),
        refit_executor("tcp://127.0.0.1:9", timeout=1),
    ):
        pass


def test_a_failing_refit_is_counted_not_raised(fitted, pool):
    """An unfittable syntax makes every draw fail: the result says so instead of crashing."""
    spec = refit_spec(fitted, PATHS, load_reference(), "configural")
    broken = type(spec)(**{**spec.__dict__, "syntax": "AoDS =~ nosuchitem\nAoDS ~ IUIPC"})
    boot = bootstrap_vaar(fitted.data, broken, draws=2, executor=pool)
    assert len(boot.failed_fits) == 2
    assert all(f["error"] for f in boot.failed_fits)
    intervals = boot.intervals.set_index("model")
    assert (intervals["draws_failed"] == 2).all()
    assert math.isnan(intervals.loc["aligned", "vaar_soft_ci_lower"])
    assert np.isnan(boot.pairwise["vaar_soft_ci_lower"]).all()


@pytest.mark.slow
def test_bootstrap_ci_covers_the_planted_target(pool):
    """The coverage machinery end to end at toy size: one data set of 3 independent groups,
    10 draws. Its 3 intervals only show the CIs land around the target; the coverage rate
    itself is measured by bench/bench_alignment.py (numbers in docs/vaar.md)."""
    instruments = short_instruments(INSTRUMENTS)
    rows, targets = measure_coverage(
        (-0.15, 0.15), instruments, replicates=1, groups=3, sessions=80, draws=10,
        executor=pool, n_large=2000, mc_datasets=2, seed=3,
    )  # fmt: skip
    # a weak planted alignment: the target is not saturated at 1; the mean z of small samples
    # gives a target of its own, and every interval is judged against both
    assert 0.7 < targets["population"] < 0.97 and 0.5 < targets["mean z"] < 0.97
    assert rows["covered_mean_z"].notna().all()
    assert len(rows) == 9 and rows["covered"].notna().all()  # 3 intervals x 3 methods
    assert set(rows["method"]) == {"basic-est", "basic-z", "percentile"}
    assert (rows["draws_ok"] >= 8).all()
    assert rows["covered"].sum() >= 6
