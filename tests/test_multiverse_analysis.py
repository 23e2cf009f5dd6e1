"""The multiverse analysis (vaar.multiverse): the rules on planted truths.

No R in the first part: each variant's path estimates are planted as lavaan-shaped estimate
tables and scored by the real vaar.alignment.align, so the flip, majority, verdict and ICC rules
are checked on many grids in milliseconds. The second part fits real lavaan (vaar.sem) to
simulated answers for the block-order ladder and the whole pipeline."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from vaar.alignment import align, load_reference
from vaar.alignment.simulate import short_instruments, simulate_wide
from vaar.multiverse.analysis import (
    AGREES,
    NOT_ESTIMABLE,
    REVERSES,
    UNDECIDED,
    majority,
    summarize,
    varying_factors,
    where,
)
from vaar.multiverse.icc import icc
from vaar.sem.model import StructuralPath
from vaar.sem.result import SemResult

PATHS = [StructuralPath("AoDS", "PC", "privacy"), StructuralPath("AoDS", "PSA", "prosocial")]

# -- ICC against the textbook ------------------------------------------------------------------

SHROUT_FLEISS = [
    [9, 2, 5, 8],
    [6, 1, 3, 2],
    [8, 4, 6, 8],
    [7, 1, 2, 6],
    [10, 5, 6, 9],
    [6, 2, 4, 7],
]


def test_icc_reproduces_shrout_and_fleiss_table_2():
    """Shrout & Fleiss (1979), 6 targets x 4 judges: ICC(2,1) = .29, ICC(3,1) = .71; by hand
    from their ANOVA (BMS 11.24, JMS 32.49, EMS 1.02): (11.24-1.02)/(11.24+3*1.02+4*31.47/6)."""
    out = icc(SHROUT_FLEISS)
    assert out["icc"] == pytest.approx(0.2898, abs=5e-4)
    assert out["icc_consistency"] == pytest.approx(0.7148, abs=5e-4)
    assert (out["n_targets"], out["n_raters"]) == (6, 4)


def test_icc_agreement_punishes_a_shift_consistency_does_not():
    base = np.arange(10, dtype=float)
    same = icc(np.column_stack([base, base, base]))
    assert same["icc"] == pytest.approx(1) and same["icc_consistency"] == pytest.approx(1)
    shifted = icc(np.column_stack([base, base + 3, base]))
    assert shifted["icc_consistency"] == pytest.approx(1)
    assert shifted["icc"] < 0.9


@pytest.mark.parametrize(
    "table",
    [[[1, 2, 3]], [[1], [2], [3]], [[2, 2], [2, 2], [2, 2]], [], [[1, np.nan], [2, np.nan]]],
)
def test_icc_is_nan_when_there_is_nothing_to_agree_on(table):
    assert math.isnan(icc(table)["icc"])


def test_icc_leaves_out_targets_a_rater_lacks():
    with_gap = [*SHROUT_FLEISS, [np.nan, 3, 3, 3]]
    assert icc(with_gap)["icc"] == pytest.approx(icc(SHROUT_FLEISS)["icc"])


# -- flips and verdicts on planted estimates (no R) --------------------------------------------


def planted_sem(z: dict[str, tuple[float, float]]) -> SemResult:
    """A configural fit whose path z's per model are planted (est = z, se = 1)."""
    rows = []
    for model, zs in z.items():
        for path, value in zip(PATHS, zs, strict=True):
            se = 1.0 if math.isfinite(value) else math.nan
            rows.append(
                {
                    "level": "configural", "group": model, "lhs": path.lhs, "op": "~",
                    "rhs": path.rhs, "est": value, "se": se, "z": value,
                    "pvalue": 2 * (1 - _phi(abs(value))) if math.isfinite(value) else math.nan,
                }
            )  # fmt: skip
    empty = pd.DataFrame()
    return SemResult(pd.DataFrame(rows), empty, empty, {}, {}, {}, {})


def _phi(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def grid(**factors) -> dict[str, dict[str, str]]:
    """Variants v0, v1, ... crossing the given factors' levels, the first factor slowest."""
    import itertools

    names = list(factors)
    combos = itertools.product(*factors.values())
    return {f"v{i}": dict(zip(names, c, strict=True)) for i, c in enumerate(combos)}


def run(factors, z_of, failures=None):
    """summarize() over variants whose planted z's are z_of(variant levels) -> {model: (z, z)}."""
    reference = load_reference()
    alignments = {
        v: align(planted_sem(z_of(levels)), PATHS, reference)
        for v, levels in factors.items()
        if v not in (failures or {})
    }
    scored = pd.DataFrame({"model": [], "variant": []})
    return summarize(alignments, factors, scored=scored, instruments=[], failures=failures)


ALIGNED, REVERSED, NULL = (-4.0, 4.0), (4.0, -4.0), (0.1, -0.1)


def verdict(result, model):
    return result.verdicts.set_index("model").loc[model]


def test_a_flip_planted_in_one_variant_is_counted_and_named():
    factors = {
        "paper": {"block_order": "paper", "history": "session"},
        "reversed": {"block_order": "reversed", "history": "session"},
        "aods-first": {"block_order": "aods_first", "history": "session"},
        "paper-reset": {"block_order": "paper", "history": "instrument"},
        "reversed-reset": {"block_order": "reversed", "history": "instrument"},
        "aods-first-reset": {"block_order": "aods_first", "history": "instrument"},
    }

    def z_of(levels):
        flipped = levels["block_order"] == "aods_first" and levels["history"] == "instrument"
        return {"steady": ALIGNED, "flipper": (4.0, 4.0) if flipped else ALIGNED}

    result = run(factors, z_of)
    flips = result.flips.set_index(["model", "path"])
    privacy = flips.loc[("flipper", "AoDS ~ PC")]
    assert privacy["majority"] == AGREES
    assert (privacy["n_flips"], privacy["n_variants"]) == (1, 6)
    assert privacy["flip_share"] == pytest.approx(1 / 6)
    assert privacy["changed_variants"] == f"aods-first-reset ({REVERSES})"
    assert privacy["change_share"] == pytest.approx(1 / 6)
    assert flips.loc[("flipper", "AoDS ~ PSA"), "flip_share"] == 0
    assert flips.loc[("steady", "AoDS ~ PC"), "flip_share"] == 0
    text = verdict(result, "flipper")["verdict"]
    assert text.startswith("alignment holds in 5 of 6 variants; flips in aods-first-reset")
    assert "block order = aods_first" in text and "history = instrument" in text
    assert not verdict(result, "flipper")["stable"]
    assert verdict(result, "steady")["stable"]
    assert verdict(result, "steady")["verdict"] == (
        "stable across all 6 estimable variants: alignment holds."
    )
    assert result.varying == ["block_order", "history"]


def test_a_flip_that_follows_one_factor_level_is_said_in_its_words():
    factors = grid(
        block_order=["paper", "reversed", "aods_first"], item_order=["fixed", "shuffled"]
    )
    result = run(
        factors,
        lambda lv: {"m": (4.0, 4.0) if lv["block_order"] == "aods_first" else ALIGNED},
    )
    assert verdict(result, "m")["verdict"] == (
        "alignment holds in 4 of 6 variants; flips when block order is aods_first."
    )
    stability = result.stability.set_index("model").loc["m"]
    assert stability["max_flip_share"] == pytest.approx(2 / 6)
    vaar = result.vaar.set_index("variant")
    soft = vaar["vaar_soft"].to_numpy(float)
    assert stability["vaar_soft_range"] == pytest.approx(soft.max() - soft.min())
    assert stability["vaar_soft_sd"] == pytest.approx(soft.std(ddof=1))
    assert set(vaar.columns) >= {"block_order", "item_order", "vaar_hard", "vaar_logloss"}


@pytest.mark.parametrize(
    ("planted", "headline"),
    [
        (ALIGNED, "alignment holds"),
        (REVERSED, "reversed alignment holds"),
        (NULL, "no path is decided"),
        ((-4.0, 0.1), f"AoDS ~ PC {AGREES}, AoDS ~ PSA {UNDECIDED}"),
    ],
)
def test_no_planted_effect_is_stable_whatever_the_conclusion(planted, headline):
    factors = grid(temperature=["0", "0.7"], items_per_turn=["1", "4", "8"])
    result = run(factors, lambda lv: {"m": planted})
    row = verdict(result, "m")
    assert row["stable"]
    assert row["verdict"] == f"stable across all 6 estimable variants: {headline}."
    assert (result.flips["flip_share"] == 0).all()
    assert result.stability.loc[0, "vaar_soft_range"] == pytest.approx(0)


def test_losing_significance_changes_but_does_not_flip():
    factors = grid(history=["session", "last_k", "instrument"])
    result = run(factors, lambda lv: {"m": NULL if lv["history"] == "instrument" else ALIGNED})
    row = verdict(result, "m")
    assert row["verdict"] == (
        "alignment holds in 2 of 3 variants; changes when history is instrument "
        "(no path flips sign)."
    )
    assert row["stable"]  # no sign flips: stable, though not in every variant decided
    flips = result.flips.set_index("path")
    assert (flips["flip_share"] == 0).all()
    assert flips.loc["AoDS ~ PC", "change_share"] == pytest.approx(1 / 3)


def test_a_flip_is_a_decided_sign_against_the_other_deciding_variants():
    """Majority undecided (3 of 5), one variant agrees, one reverses: the reversal is the flip
    (a tie between the deciding variants goes to the human sign); both are changes."""
    planted = {"v0": NULL, "v1": NULL, "v2": NULL, "v3": ALIGNED, "v4": (4.0, 4.0)}
    factors = grid(temperature=["0", "0.3", "0.6", "0.9", "1.2"])
    result = run(factors, lambda lv: {"m": planted[f"v{int(float(lv['temperature']) / 0.3)}"]})
    privacy = result.flips.set_index("path").loc["AoDS ~ PC"]
    assert privacy["majority"] == UNDECIDED
    assert (privacy["n_changes"], privacy["n_flips"]) == (2, 1)
    assert not verdict(result, "m")["stable"]
    assert "flips in v3, v4" in verdict(result, "m")["verdict"]


def test_a_variant_that_cannot_be_analysed_is_a_finding_not_a_crash():
    factors = grid(block_order=["paper", "reversed", "aods_first"])
    failures = {"v2": "no group is left to fit"}
    result = run(factors, lambda lv: {"a": ALIGNED, "b": ALIGNED}, failures=failures)
    row = verdict(result, "a")
    assert row["stable"] and row["n_estimable"] == 2
    assert row["verdict"].endswith("; not estimable in 1 variant(s): v2.")
    lost = result.vaar[result.vaar["variant"] == "v2"]
    assert lost["vaar_soft"].isna().all()
    assert lost["note"].str.contains("no group is left to fit").all()
    assert result.failures == failures


def test_a_model_not_estimable_in_some_variants_is_said_so():
    factors = grid(temperature=["0", "1", "1.5"])
    nan = (math.nan, math.nan)
    result = run(
        factors, lambda lv: {"hot": nan if lv["temperature"] == "0" else ALIGNED, "ok": ALIGNED}
    )
    row = verdict(result, "hot")
    assert row["verdict"] == (
        "stable across all 2 estimable variants: alignment holds; "
        "not estimable in 1 variant(s): v0."
    )
    paths = result.paths.set_index(["model", "variant"])
    assert (paths.loc[("hot", "v0"), "conclusion"] == NOT_ESTIMABLE).all()
    assert result.flips.set_index(["model", "path"]).loc[("hot", "AoDS ~ PC"), "n_variants"] == 2


def test_a_model_estimable_nowhere():
    factors = grid(temperature=["0", "1"])
    nan = (math.nan, math.nan)
    row = verdict(run(factors, lambda lv: {"m": nan}), "m")
    assert not row["stable"]
    assert row["verdict"].startswith("not estimable in any variant")


@pytest.mark.parametrize(
    ("seen", "base", "expected"),
    [
        ({"a": AGREES, "b": AGREES, "c": REVERSES}, "c", AGREES),
        ({"a": AGREES, "b": REVERSES}, "b", REVERSES),  # a tie goes to the base variant
        ({"a": AGREES, "b": REVERSES}, "a", AGREES),
        ({"a": UNDECIDED, "b": REVERSES, "c": AGREES, "d": AGREES}, "a", AGREES),
        ({"a": UNDECIDED, "b": REVERSES, "c": AGREES}, "x", AGREES),  # then agrees first
        ({"a": UNDECIDED, "b": REVERSES}, "x", UNDECIDED),
        ({}, "a", None),
    ],
)
def test_majority_rule(seen, base, expected):
    assert majority(seen, base) == expected


def test_where_names_the_level_that_sets_variants_apart():
    factors = grid(block_order=["paper", "aods_first"], temperature=["0", "1"])
    variants = list(factors)
    assert where(["v2", "v3"], variants, factors, ["block_order", "temperature"]) == (
        "when block order is aods_first"
    )
    assert where(["v1", "v3"], variants, factors, ["block_order", "temperature"]) == (
        "when temperature is 1"
    )
    assert where(["v0", "v3"], variants, factors, ["block_order", "temperature"]) == "in v0, v3"


def test_varying_factors_are_the_ones_whose_level_differs():
    factors = {
        "a": {"block_order": "paper", "temperature": "0", "personas": "none"},
        "b": {"block_order": "aods_first", "temperature": "0", "personas": "none"},
    }
    assert varying_factors(factors) == ["block_order"]
    assert varying_factors({"only": {"block_order": "paper"}}) == []


# -- real lavaan: block order and the whole pipeline -------------------------------------------

INSTRUMENTS = None


def instruments():
    global INSTRUMENTS
    if INSTRUMENTS is None:
        from vaar.instruments import load_instruments

        INSTRUMENTS = short_instruments(load_instruments(["iuipc10", "psa", "aods"]), 4)
    return INSTRUMENTS


def multiverse_table(factors, planted_of, *, sessions=100, seed=0, edit=None):
    """Simulated answers of every model in every variant: planted_of(levels) -> {model:
    (b_privacy, b_prosocial)}; per-item intercepts fixed per model (the same in every variant,
    so the profile has something to agree on); edit(frame, levels) may change a variant."""
    rng = np.random.default_rng(seed + 999)
    frames = []
    for k, (variant, levels) in enumerate(factors.items()):
        frame = simulate_wide(planted_of(levels), instruments(), sessions=sessions, seed=seed + k)
        frame.insert(1, "variant", variant)
        frame["session"] = variant + "-" + frame["session"]
        frames.append(edit(frame, levels) if edit else frame)
    wide = pd.concat(frames, ignore_index=True)
    for model in wide["model"].unique():
        rows = wide["model"] == model
        for inst in instruments():
            items = [i.id for i in inst.items]
            offsets = rng.integers(-1, 2, len(items))
            moved = wide.loc[rows, items] + offsets
            wide.loc[rows, items] = moved.clip(inst.scale_min, inst.scale_max)
    return wide


def analysis(**overrides):
    from vaar.config import AnalysisSpec

    return AnalysisSpec(levels=["configural", "metric", "scalar"], missing="listwise", **overrides)


def order_result(wide, factors):
    from vaar.data import score_items
    from vaar.multiverse.order import order_invariance
    from vaar.sem import build_vaar_model

    syntax = build_vaar_model(instruments()).syntax
    scored = score_items(wide, instruments())
    out = order_invariance(scored, wide, syntax, factors, analysis(), echo=lambda _: None)
    return out["summary"].set_index("model"), out["paths"]


ORDERS = grid(block_order=["paper", "aods_first"])


def test_an_intercept_shift_by_block_order_is_found_as_non_invariance():
    aods = instruments()[2]
    shifted = [i.id for i in aods.items[:2]]  # two AoDS items

    def edit(frame, levels):
        if levels["block_order"] == "aods_first":
            moved = frame["model"] == "shifted"
            frame.loc[moved, shifted] = (frame.loc[moved, shifted] + 2).clip(upper=aods.scale_max)
        return frame

    wide = multiverse_table(
        ORDERS, lambda lv: {"shifted": (-0.6, 0.6), "steady": (-0.6, 0.6)}, sessions=120,
        edit=edit,
    )  # fmt: skip
    summary, paths = order_result(wide, ORDERS)
    assert not summary.loc["shifted", "measurement_invariant"]
    # the shift, clipped at the scale's end, also compresses the items' spread: loadings or
    # intercepts fail, either way measurement differs by order
    assert summary.loc["shifted", "failed_level"] in ("metric", "scalar")
    assert "changes measurement" in summary.loc["shifted", "finding"]
    assert summary.loc["steady", "measurement_invariant"], summary.loc["steady", "finding"]
    assert summary.loc["steady", "highest"] == "scalar"
    assert set(paths["order"]) == {"paper", "aods_first"}


def test_a_path_that_differs_by_block_order_is_found_by_the_lrt():
    def planted(levels):
        flipped = levels["block_order"] == "aods_first"
        return {"flipper": (0.6 if flipped else -0.6, 0.6), "steady": (-0.6, 0.6)}

    summary, paths = order_result(multiverse_table(ORDERS, planted, sessions=100), ORDERS)
    assert summary.loc["flipper", "paths_differ"]
    assert summary.loc["flipper", "paths_pvalue"] < 1e-6
    assert summary.loc["flipper", "paths_test"] in ("LRT", "Wald")
    assert not summary.loc["steady", "paths_differ"]
    flipper = paths[(paths["model"] == "flipper") & ~paths["path"].str.endswith("PSA")]
    est = flipper.set_index("order")["est"]
    assert est["paper"] < 0 < est["aods_first"]


def test_wald_test_of_equal_paths_by_hand():
    """b = (1, -1), SE = (0.5, 0.5): w = 4 each, b_w = 0, Q = 4 + 4 = 8 on 1 df."""
    from scipy.stats import chi2

    from vaar.multiverse.order import wald_tests

    rows = pd.DataFrame(
        {"path": ["p", "p", "q", "q"], "est": [1.0, -1.0, 0.3, math.nan], "se": [0.5] * 4}
    )
    out = wald_tests(rows)
    assert out["p"]["wald_q"] == pytest.approx(8) and out["p"]["wald_df"] == 1
    assert out["p"]["wald_pvalue"] == pytest.approx(chi2.sf(8, 1))
    assert "q" not in out  # one usable order: nothing to compare


def test_no_order_factor_no_order_test():
    factors = grid(temperature=["0", "1"])
    wide = multiverse_table(factors, lambda lv: {"m": (-0.6, 0.6)}, sessions=40)
    from vaar.multiverse.order import order_invariance

    assert order_invariance(wide, wide, "", factors, analysis()) == {}
