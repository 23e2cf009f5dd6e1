"""Benchmark of vaar.sem (prints measured numbers; not a test).

(vaar vs plain Rscript and FIML vs listwise: bench_ladder.py; time vs groups: bench_groups.py)

1. growth: ladder time as the number of groups (2 -> 20) and sessions per group (100 -> 2000)
   grow.
2. recovery: planted structural paths in simulated multi-group data, estimated at the
   configural level: bias, RMSE and 95% CI coverage over replications.

    .venv/bin/python bench/bench_sem.py            # default (make bench): a few minutes
    .venv/bin/python bench/bench_sem.py --full     # the larger grid, 30 replications
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = """
P =~ p1 + p2 + p3 + p4
S =~ s1 + s2 + s3 + s4
A =~ a1 + a2 + a3 + a4
A ~ P + S
"""
LOADING = 0.7
PATHS = [(-0.4, 0.3), (0.3, -0.2), (0.0, 0.0), (-0.2, -0.3)]  # (b_P, b_S) per group, cycled


def simulate(groups: int, sessions: int, seed: int) -> pd.DataFrame:
    """Continuous indicators of P, S (correlated .2) and A = bP*P + bS*S + e (var(A) = 1);
    equal loadings and intercepts in every group, so configural..strict all hold."""
    rng = np.random.default_rng(seed)
    frames = []
    for g in range(groups):
        b_p, b_s = PATHS[g % len(PATHS)]
        latent = rng.multivariate_normal([0, 0], [[1, 0.2], [0.2, 1]], sessions)
        explained = b_p**2 + b_s**2 + 2 * b_p * b_s * 0.2
        a = latent @ [b_p, b_s] + rng.normal(0, np.sqrt(1 - explained), sessions)
        cols = {"group": f"g{g + 1:02d}"}
        for name, factor in (("p", latent[:, 0]), ("s", latent[:, 1]), ("a", a)):
            for i in range(1, 5):
                noise = rng.normal(0, np.sqrt(1 - LOADING**2), sessions)
                cols[f"{name}{i}"] = 3 + LOADING * factor + noise
        frames.append(pd.DataFrame(cols))
    return pd.concat(frames, ignore_index=True)


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the R processes forked per level):
    a fairer measure than wall time on a shared machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def growth(group_grid: list[int], session_grid: list[int], estimator: str) -> None:
    from vaar.sem import fit_ladder

    print(f"\n== growth ({estimator}, configural..strict, 12 items)")
    print(f"{'groups':>6} {'sessions':>8} {'wall s':>8} {'CPU s':>8}")
    grid = [(g, 200) for g in group_grid] + [(4, s) for s in session_grid if s != 200]
    for groups, sessions in grid:
        data = simulate(groups, sessions, seed=2)
        start, cpu = time.perf_counter(), cpu_seconds()
        fit_ladder(data, MODEL, "group", estimator=estimator)
        wall = time.perf_counter() - start
        print(f"{groups:>6} {sessions:>8} {wall:>8.2f} {cpu_seconds() - cpu:>8.2f}")


def recovery(replications: int, sessions: int) -> None:
    from vaar.sem import fit_ladder

    rows = []
    for rep in range(replications):
        data = simulate(3, sessions, seed=1000 + rep)
        paths = fit_ladder(data, MODEL, "group", levels=["configural"]).paths("configural")
        for _, p in paths.iterrows():
            g = int(p["group"][1:]) - 1
            truth = PATHS[g % len(PATHS)][0 if p["rhs"] == "P" else 1]
            rows.append({"group": p["group"], "rhs": p["rhs"], "truth": truth, "est": p["est"],
                         "covered": p["ci_lower"] <= truth <= p["ci_upper"]})  # fmt: skip
    table = pd.DataFrame(rows)
    table["error"] = table["est"] - table["truth"]
    summary = table.groupby(["group", "rhs", "truth"]).agg(
        bias=("error", "mean"),
        rmse=("error", lambda e: float(np.sqrt(np.mean(e**2)))),
        coverage=("covered", "mean"),
    )
    print(f"\n== recovery: 3 groups x {sessions} sessions, {replications} replications, "
          "configural MLR paths (true values planted)")  # fmt: skip
    print(summary.round(4).to_string())
    print(f"overall: mean |bias| {summary['bias'].abs().mean():.4f}, "
          f"coverage {table['covered'].mean():.3f} (nominal 0.95)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--growth-estimator", default="ML", choices=["ML", "MLR"],
                        help="MLR's robust information grows much faster with groups")  # fmt: skip
    args = parser.parse_args()
    if args.full:
        growth([2, 5, 10, 20], [100, 500, 2000], args.growth_estimator)
        recovery(30, 300)
    else:
        growth([2, 10], [100, 1000], args.growth_estimator)
        recovery(10, 300)


if __name__ == "__main__":
    main()
