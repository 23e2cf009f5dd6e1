"""VAAR maths and the human reference, on estimate tables built by hand (no R needed)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from vaar.alignment.reference import (
    StructuralPath,
    load_reference,
    reference_from_group,
)
from vaar.alignment.scores import LOGLOSS_FLOOR, path_evidence, vaar_scores
from vaar.errors import ConfigError, VaarError

PATHS = [StructuralPath("AoDS", "IUIPC", "privacy"), StructuralPath("AoDS", "PSA", "prosocial")]


def estimates(rows, level="configural"):
    """An estimates table in vaar.sem's contract: rows of (group, rhs, est, se[, std_all])."""
    out = []
    for group, rhs, est, se, *std in rows:
        z = est / se if se else math.nan
        out.append(
            {
                "level": level, "group": group, "lhs": "AoDS", "op": "~", "rhs": rhs,
                "label": "", "est": est, "se": se, "z": z,
                "pvalue": 2 * norm.sf(abs(z)) if se else math.nan,
                "ci_lower": est - 1.96 * se, "ci_upper": est + 1.96 * se,
                "std_all": std[0] if std else est / 2,
            }
        )  # fmt: skip
    # a loading row, which must be ignored
    out.append({**out[0], "op": "=~", "lhs": "PSA", "rhs": "psa01", "est": 1.0, "se": 0.0})
    return pd.DataFrame(out)


def test_builtin_reference_signs_and_citations():
    ref = load_reference()
    assert ref.expected_sign(PATHS[0]) == -1
    assert ref.expected_sign(PATHS[1]) == 1
    assert ref.expected_sign(("AoDS", "BUCH_TP", "privacy")) == -1
    assert ref.expected_sign(("AoDS", "IUIPC_COLL", "privacy")) == -1
    assert "117247" in " ".join(ref.roles["privacy"].citations)
    prosocial = " ".join(ref.roles["prosocial"].citations)
    assert "578618" in prosocial and "106938" in prosocial
    assert "assumption" in ref.factors["BUCH_GC"].rationale


def test_bad_reference_files_say_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[roles.privacy]\nsign = 0\ncitations = ["x"]\n')
    with pytest.raises(ConfigError, match=r"roles\.privacy\.sign"):
        load_reference(bad)
    bad.write_text('[roles.privacy]\nsign = -1\ncolor = "red"\n')
    with pytest.raises(ConfigError, match="unknown field"):
        load_reference(bad)
    bad.write_text("title = 'nothing'\n")
    with pytest.raises(ConfigError, match="sets no sign"):
        load_reference(bad)
    with pytest.raises(ConfigError, match="no such reference file"):
        load_reference(tmp_path / "missing.toml")
    only_privacy = tmp_path / "p.toml"
    only_privacy.write_text("[roles.privacy]\nsign = -1\n")
    with pytest.raises(VaarError, match=r"no expected sign for path AoDS ~ PSA"):
        load_reference(only_privacy).expected_sign(PATHS[1])


def test_evidence_is_phi_of_signed_z_and_scores_aggregate_it():
    est = estimates(
        [
            ("aligned", "IUIPC", -0.4, 0.1),
            ("aligned", "PSA", 0.3, 0.1),
            ("reversed", "IUIPC", 0.4, 0.1),
            ("reversed", "PSA", -0.05, 0.1),
        ]
    )
    ref = load_reference()
    ev = path_evidence(est, PATHS, ref, level="configural")
    assert len(ev) == 4
    expected = norm.cdf([4.0, 3.0, -4.0, -0.5])
    np.testing.assert_allclose(ev["evidence"], expected)
    assert list(ev["supports"]) == [True, True, False, False]
    scores = vaar_scores(est, PATHS, ref, level="configural").set_index("model")
    assert scores.loc["aligned", "vaar_soft"] == pytest.approx(expected[:2].mean())
    assert scores.loc["aligned", "vaar_hard"] == 1.0
    assert scores.loc["reversed", "vaar_hard"] == 0.0
    assert scores.loc["reversed", "vaar_logloss"] == pytest.approx(-np.log(expected[2:]).mean())
    assert scores.loc["aligned", "vaar_logloss"] < 0.01
    assert (scores["n_paths"] == 2).all() and (scores["level"] == "configural").all()


def test_hard_needs_significance_and_logloss_is_floored():
    est = estimates([("m", "IUIPC", -0.1, 0.1), ("m", "PSA", -5.0, 0.05)])
    row = vaar_scores(est, PATHS, load_reference(), level="configural").iloc[0]
    assert row["vaar_hard"] == 0.0  # right sign but p = .32; wrong sign on the other
    # the second path's Phi(-100) underflows to 0: the floor keeps the loss finite
    expected = -(np.log(norm.cdf(1.0)) + np.log(LOGLOSS_FLOOR)) / 2
    assert row["vaar_logloss"] == pytest.approx(expected)
    assert row["vaar_soft"] == pytest.approx(norm.cdf(1.0) / 2)


def test_unestimable_models_are_listed_with_reason_and_nan():
    est = estimates([("ok", "IUIPC", -0.4, 0.1), ("ok", "PSA", 0.3, 0.1)])
    est = pd.concat([est, estimates([("broken", "IUIPC", 0.2, math.nan)])])
    scores = vaar_scores(
        est, PATHS, load_reference(), level="configural", models=["ok", "broken", "gone"]
    ).set_index("model")
    assert scores.loc["ok", "note"] == ""
    for model in ("broken", "gone"):
        assert math.isnan(scores.loc[model, "vaar_soft"])
        assert math.isnan(scores.loc[model, "vaar_hard"])
        assert "not estimable" in scores.loc[model, "note"]
    assert "se=nan" in scores.loc["broken", "note"]
    assert "no estimate for AoDS ~ PSA" in scores.loc["broken", "note"]
    assert "no estimate for AoDS ~ IUIPC" in scores.loc["gone", "note"]


def test_standardized_variant_uses_std_all_and_says_which_z():
    est = estimates([("m", "IUIPC", -0.4, 0.1, -0.3), ("m", "PSA", 0.3, 0.1, 0.2)])
    ev = path_evidence(est, PATHS, load_reference(), level="configural", standardized=True)
    assert list(ev["est"]) == [-0.3, 0.2]
    np.testing.assert_allclose(ev["evidence"], norm.cdf([4.0, 3.0]))
    assert ev["note"].str.contains("unstandardized z").all()
    assert (ev["scale"] == "standardized").all() and ev["se"].isna().all()


def test_level_selects_rows_and_missing_columns_fail_clearly():
    est = pd.concat(
        [
            estimates([("m", "IUIPC", -0.4, 0.1), ("m", "PSA", 0.3, 0.1)]),
            estimates([("m", "IUIPC", 0.4, 0.1), ("m", "PSA", -0.3, 0.1)], level="scalar"),
        ]
    )
    ref = load_reference()
    assert vaar_scores(est, PATHS, ref, level="configural")["vaar_hard"].iloc[0] == 1.0
    assert vaar_scores(est, PATHS, ref, level="scalar")["vaar_hard"].iloc[0] == 0.0
    with pytest.raises(VaarError, match=r"lacks column\(s\) \['se'\]"):
        vaar_scores(est.drop(columns="se"), PATHS, ref, level="configural")


def test_reference_from_human_group_takes_its_signs_and_is_not_scored():
    est = estimates(
        [
            ("humans", "IUIPC", 0.2, 0.1),  # these humans share *more* when concerned
            ("humans", "PSA", 0.3, 0.1),
            ("llm", "IUIPC", 0.4, 0.1),
            ("llm", "PSA", 0.3, 0.1),
        ]
    )
    ref = reference_from_group(est, PATHS, "humans")
    assert ref.human_group == "humans"
    assert [ref.expected_sign(p) for p in PATHS] == [1, 1]
    scores = vaar_scores(est, PATHS, ref, level="configural")
    assert list(scores["model"]) == ["llm"]
    assert scores["vaar_hard"].iloc[0] == 1.0
    with pytest.raises(VaarError, match="human group 'nobody' has no path estimates"):
        reference_from_group(est, PATHS, "nobody")
    est.loc[est["group"] == "humans", "est"] = 0.0
    with pytest.raises(VaarError, match="no usable estimate"):
        reference_from_group(est, PATHS, "humans")


def test_sign_metrics_equal_the_scores_and_basic_z_reflects_each_path():
    """The vectorised formulas give the scores of the same z, and the basic-z interval's draws
    are 2z - z*: a draw that moved a path's z down by d counts as the observed z moved up by d."""
    from vaar.alignment.bootstrap import BootstrapResult, reflected_draws
    from vaar.alignment.scores import scores_from_evidence, sign_metrics

    table = estimates([("m", "IUIPC", -0.3, 0.2), ("m", "PSA", 0.1, 0.1), ("n", "PSA", 0.5, 0.1)])
    table = table[~((table["group"] == "n") & (table["rhs"] == "IUIPC"))]
    evidence = path_evidence(table, PATHS, load_reference(), level="configural")
    scores = scores_from_evidence(evidence, "configural").set_index("model")
    m = evidence[evidence["model"] == "m"]
    z, signs = m["z"].to_numpy(), m["expected_sign"].to_numpy()
    metrics = sign_metrics(z[None, :], signs, 0.05)
    for name, values in metrics.items():
        assert values[0] == pytest.approx(scores.loc["m", name])

    observed = evidence.dropna(subset=["z"])[["model", "lhs", "rhs", "expected_sign", "z", "z_se"]]
    moved = observed.assign(draw=0, z=observed["z"] - np.array([0.5, -1.0, 0.2]))
    incomplete = moved[moved["model"] == "m"].iloc[:1].assign(draw=1)  # one path missing
    result = BootstrapResult(
        pd.DataFrame(), pd.concat([moved, incomplete]), observed, pd.DataFrame(), pd.DataFrame(), 2
    )
    reflected = reflected_draws(result, "basic-z").set_index(["model", "draw"])
    expected = sign_metrics((z + np.array([0.5, -1.0]))[None, :], signs, 0.05)
    assert reflected.loc[("m", 0), "vaar_soft"] == pytest.approx(expected["vaar_soft"][0])
    assert ("m", 1) not in reflected.index  # a draw without every path does not count
    # model n has one path (IUIPC is missing in the data), reflected on its own
    n_z = observed.loc[observed["model"] == "n", "z"].iloc[0]
    assert reflected.loc[("n", 0), "vaar_soft"] == pytest.approx(norm.cdf(n_z + 0.2))
    # basic-est divides the drawn estimate by the *observed* SE: a draw whose own SE doubled
    # (z* halved for the same estimate) moves as far as its estimate, not its z
    wide_se = moved.assign(z=moved["z"] / 2, z_se=moved["z_se"] * 2)
    result.paths = wide_se
    by_est = reflected_draws(result, "basic-est").set_index(["model", "draw"])
    assert by_est.loc[("m", 0), "vaar_soft"] == pytest.approx(expected["vaar_soft"][0])
