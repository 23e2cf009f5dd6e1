"""Answers with planted value -> action paths, for checking that VAAR finds what was planted.

Every privacy item loads on one privacy-concern factor, every prosocial item on PSA, every
sharing item on AoDS, and AoDS = b_privacy * PC + b_prosocial * PSA + N(0, 1). Items are
lambda * factor + noise, reverse-keyed items flipped, then (by default) rounded onto the
instrument's response scale, so the output is a wide table like a real study's.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import norm

from vaar.errors import VaarError
from vaar.instruments import PRIVACY, PROSOCIAL, ROLES, SHARING
from vaar.invariance import BASELINE

COVERED = {"population": "covered", "mean z": "covered_mean_z"}  # target -> row column


def simulate_wide(
    models: dict[str, tuple[float, float]],
    instruments,
    *,
    sessions: int = 200,
    loading: float = 0.7,
    discrete: bool = True,
    shifts: dict[str, dict[str, float]] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Wide table (model, session, raw item columns); `models` maps name -> (b_privacy,
    b_prosocial); `shifts` optionally moves a model's factor means: {name: {role: shift}}."""
    roles = {inst.role for inst in instruments}
    if not set(ROLES) <= roles:
        raise VaarError(f"simulation needs instruments for roles {ROLES}, got {sorted(roles)}")
    rng = np.random.default_rng(seed)
    frames = []
    for name, (b_privacy, b_prosocial) in models.items():
        pc, psa = rng.standard_normal((2, sessions))
        latent = {
            PRIVACY: pc,
            PROSOCIAL: psa,
            SHARING: b_privacy * pc + b_prosocial * psa + rng.standard_normal(sessions),
        }
        frame = {"model": name, "session": [f"{name}-{i:05d}" for i in range(sessions)]}
        for inst in instruments:
            eta = latent[inst.role]
            eta = (eta - eta.mean()) / eta.std() if inst.role == SHARING else eta
            eta = eta + (shifts or {}).get(name, {}).get(inst.role, 0.0)
            lo, hi = inst.scale_min, inst.scale_max
            for item in inst.items:
                x = loading * eta + np.sqrt(1 - loading**2) * rng.standard_normal(sessions)
                x = -x if item.reverse else x
                value = (lo + hi) / 2 + x * (hi - lo) / 4
                frame[item.id] = np.clip(np.round(value), lo, hi) if discrete else value
        frames.append(pd.DataFrame(frame))
    return pd.concat(frames, ignore_index=True)


def long_from_wide(
    wide: pd.DataFrame, instruments, *, invalid: float = 0.0, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(long, wide) for `wide`: item order shuffled per session and instrument (positions),
    and a share `invalid` of answers marked invalid (value NaN in both returned tables)."""
    rng = np.random.default_rng(seed)
    wide = wide.copy()
    rows = []
    for idx, record in wide.iterrows():
        for inst in instruments:
            items = [i.id for i in inst.items if i.id in wide.columns]
            for position, item in enumerate(rng.permutation(items), start=1):
                bad = rng.random() < invalid
                value = np.nan if bad else float(record[item])
                if bad:
                    wide.at[idx, item] = np.nan
                rows.append(
                    {
                        "model": record["model"], "session": record["session"],
                        "instrument": inst.id, "item": item, "position": position,
                        "raw": "" if bad else str(int(value)), "value": value,
                        "status": "invalid" if bad else "ok", "attempts": 1,
                    }
                )  # fmt: skip
    return pd.DataFrame(rows), wide


def short_instruments(instruments, items: int = 3) -> list:
    """The instruments cut to their first `items` items: the vaar model's structure at a
    fraction of the fitting time (for tests and benches)."""
    return [inst.model_copy(update={"items": list(inst.items[:items])}) for inst in instruments]


def population_vaar_soft(z_large: list[float], signs: list[int], n_large: int, n: int) -> float:
    """The VAAR_soft target at sample size n: mean over paths of Phi(s * z_pop(n)).

    z_pop(n) = z_large * sqrt(n / n_large), with z_large the Wald z of a fit to one very large
    sample of the planted model (its estimate is the population path, its SE shrinks as
    1/sqrt(N)). This is the evidence a study of n sessions has at the population z, which is
    what VAAR_soft estimates; the planted beta alone is no target because the evidence for a
    fixed beta grows with n. N must be large: the large fit's own sampling error moves the
    target (for (-0.15, 0.15) at n = 100: 0.872 and 0.831 from two samples of 4,000, 0.853 from
    each of three samples of 40,000)."""
    z = np.asarray(z_large, float) * np.sqrt(n / n_large)
    return float(norm.cdf(np.asarray(signs) * z).mean())


def fit_configural(data: pd.DataFrame, instruments):
    """The vaar model fitted by lavaan at the configural level to simulated answers (scored):
    every group estimated on its own. Returns (vaar.sem result, the vaar model)."""
    from vaar.data import score_items
    from vaar.sem import build_vaar_model, fit_ladder

    model = build_vaar_model(instruments)
    fit = fit_ladder(
        score_items(data, instruments), model.syntax, "model", levels=[BASELINE],
        equal_paths=False,
    )  # fmt: skip
    return fit, model


def mean_z_vaar_soft(
    planted: tuple[float, float], instruments, *, sessions: int, datasets: int,
    groups: int = 4, seed: int = 10_000,
) -> float:  # fmt: skip
    """The VAAR_soft target at the average Wald z of `datasets` x `groups` independent
    samples of n sessions: mean over paths of Phi(s * mean z).

    At small n the Wald z of a latent path is biased towards 0 (its estimate attenuated, its SE
    inflated), so this finite-sample target sits below population_vaar_soft. Coverage against
    both targets separates the interval method's error from the Wald z's own bias."""
    from vaar.alignment import align, load_reference

    reference = load_reference()
    evidence = []
    for i in range(datasets):
        data = simulate_wide(
            {f"mc{i}_g{g}": planted for g in range(groups)}, instruments, sessions=sessions,
            seed=seed + i,
        )  # fmt: skip
        fit, model = fit_configural(data, instruments)
        evidence.append(align(fit, model.paths, reference).evidence)
    paths = pd.concat(evidence).dropna(subset=["z"]).groupby("rhs")
    mean_z = paths["z"].mean()
    signs = paths["expected_sign"].first()
    return float(norm.cdf(signs * mean_z).mean())


def coverage_targets(
    planted: tuple[float, float], instruments, *, sessions: int, n_large: int = 40_000,
    mc_datasets: int = 0, groups: int = 4, seed: int = 0,
) -> dict[str, float]:  # fmt: skip
    """What a VAAR_soft interval at n = `sessions` is judged against: "population"
    (population_vaar_soft from one fit of `n_large` sessions) and, when `mc_datasets` > 0,
    "mean z" (mean_z_vaar_soft on that many independent data sets). For a null planting both
    are exactly 0.5 (z is symmetric around 0); fits would only add their sampling noise."""
    from vaar.alignment import align, load_reference

    if not any(planted):
        return {"population": 0.5, **({"mean z": 0.5} if mc_datasets else {})}
    big = simulate_wide({"big": planted}, instruments, sessions=n_large, seed=seed)
    big_fit, model = fit_configural(big, instruments)
    evidence = align(big_fit, model.paths, load_reference()).evidence
    targets = {
        "population": population_vaar_soft(
            list(evidence["z"]), list(evidence["expected_sign"]), n_large, sessions
        )
    }
    if mc_datasets:
        targets["mean z"] = mean_z_vaar_soft(
            planted, instruments, sessions=sessions, datasets=mc_datasets, groups=groups,
            seed=seed + 10_000,
        )  # fmt: skip
    return targets


def covered_by(lo: float, hi: float, targets: dict[str, float]) -> dict[str, bool | None]:
    """Whether [lo, hi] holds each target, as row columns (COVERED); None for no interval."""
    finite = bool(np.isfinite([lo, hi]).all())
    return {COVERED[t]: bool(lo <= value <= hi) if finite else None for t, value in targets.items()}


def measure_coverage(
    planted: tuple[float, float],
    instruments,
    *,
    replicates: int,
    groups: int,
    sessions: int,
    draws: int,
    executor,
    n_large: int = 40_000,
    mc_datasets: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
    progress=None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Coverage of the bootstrap CI of VAAR_soft for one planted (b_privacy, b_prosocial).

    Each replicate is a multi-group data set whose `groups` groups are independent samples of
    the same planted model (the configural fit estimates every group on its own), so one
    bootstrap gives `groups` intervals per method. Returns one row per interval (with `method`
    and `covered`, plus `covered_mean_z` when `mc_datasets` > 0) and the coverage_targets;
    `progress(replicate, rows_so_far)` after each replicate. Every interval method
    (vaar.config.INTERVAL_METHODS) is judged on the same draws."""
    from vaar.alignment import align, load_reference
    from vaar.alignment.bootstrap import intervals_by
    from vaar.config import INTERVAL_METHODS

    reference = load_reference()
    targets = coverage_targets(
        planted, instruments, sessions=sessions, n_large=n_large, mc_datasets=mc_datasets,
        groups=groups, seed=seed,
    )  # fmt: skip

    rows = []
    for rep in range(replicates):
        names = {f"rep{rep}_g{g}": planted for g in range(groups)}
        data = simulate_wide(names, instruments, sessions=sessions, seed=seed + 1 + rep)
        fit, model = fit_configural(data, instruments)
        result = align(
            fit, model.paths, reference, bootstrap=draws, executor=executor, seed=seed + rep,
            confidence=confidence,
        )  # fmt: skip
        observed = result.scores.set_index("model")["vaar_soft"]
        for method in INTERVAL_METHODS:  # every method on the same draws
            intervals, _ = intervals_by(result.bootstrap, list(names), None, method)
            for row in intervals.to_dict("records"):
                lo, hi = row["vaar_soft_ci_lower"], row["vaar_soft_ci_upper"]
                rows.append(
                    {
                        "replicate": rep, "model": row["model"], "method": method,
                        "vaar_soft": observed[row["model"]], "ci_lower": lo, "ci_upper": hi,
                        "draws_ok": row["draws_ok"],
                        **covered_by(lo, hi, targets),
                    }
                )  # fmt: skip
        if progress:
            progress(rep, rows)
    return pd.DataFrame(rows), targets
