"""Measured coverage of the VAAR_soft bootstrap CI on planted-path simulations, and the mean
VAAR_soft of planted aligned, reversed and null models, through real lavaan refits.

    .venv/bin/python bench/bench_alignment.py [--replicates 10 --groups 3 --draws 50 ...]
    .venv/bin/python bench/bench_alignment.py --idealized   # interval methods, no lavaan
    .venv/bin/python bench/bench_alignment.py --only null --judge bench/results/coverage_*null.csv

Prints one line per planting, interval method and target (population, and mean z at the
study's n): intervals, coverage (with its binomial SE), misses below/above, mean CI width, mean
VAAR_soft, draw failures and wall time. See docs/vaar.md for the targets."""

from __future__ import annotations

import argparse
import math
import time

from vaar.alignment import refit_executor
from vaar.alignment.simulate import (
    COVERED,
    coverage_targets,
    covered_by,
    measure_coverage,
    short_instruments,
)
from vaar.config import INTERVAL_METHODS
from vaar.instruments import load_instrument

PLANTINGS = {
    "aligned weak": (-0.15, 0.15),
    "aligned": (-0.5, 0.5),
    "reversed": (0.5, -0.5),
    "null": (0.0, 0.0),
}


def idealized(replicates: int = 2000, draws: int = 400, seed: int = 1) -> None:
    """Coverage of three bootstrap intervals for VAAR_soft when each path's z is exactly
    N(z_true, 1) and a draw adds the same noise (no lavaan): which interval method can be
    calibrated at all, before small-sample SEs and failed fits enter."""
    import numpy as np
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    signs = np.array([-1, 1])
    print(f"idealized: {replicates} data sets x {draws} draws, two paths, 95% intervals")
    for z in (0.0, 0.5, 1.14, 2.0, 3.0):
        truth = norm.cdf(signs * np.array([-z, z])).mean()
        covered = {"percentile": 0, "bias-corrected": 0, "basic": 0}
        for _ in range(replicates):
            z_hat = np.array([-z, z]) + rng.standard_normal(2)
            draws_z = z_hat + rng.standard_normal((draws, 2))
            boot = norm.cdf(signs * draws_z).mean(axis=1)
            observed = norm.cdf(signs * z_hat).mean()
            lo, hi = np.quantile(boot, [0.025, 0.975])
            covered["percentile"] += lo <= truth <= hi
            covered["basic"] += 2 * observed - hi <= truth <= 2 * observed - lo
            share = np.clip((boot < observed).mean(), 1 / draws, 1 - 1 / draws)
            z0 = norm.ppf(share)
            lo, hi = np.quantile(boot, norm.cdf(2 * z0 + norm.ppf([0.025, 0.975])))
            covered["bias-corrected"] += lo <= truth <= hi
        rates = "  ".join(f"{k}={v / replicates:.3f}" for k, v in covered.items())
        print(f"  |z|={z:<4} target={truth:.3f}  {rates}")


def summarize(name: str, rows, targets: dict[str, float], draws: int, seconds: float) -> None:
    """One line per interval method and target: coverage with its binomial SE, misses below
    and above, mean width, mean VAAR_soft, failed model-draws."""
    for method, mine in rows.groupby("method", sort=False):
        for target, truth in targets.items():
            judged = mine.dropna(subset=[COVERED[target]])
            coverage = judged[COVERED[target]].astype(bool).mean()
            se = math.sqrt(coverage * (1 - coverage) / max(len(judged), 1))
            print(
                f"{name:13s} {method:10s} planted={PLANTINGS[name]} "
                f"target({target})={truth:.3f} intervals={len(judged)} "
                f"coverage={coverage:.3f} (SE {se:.3f}) "
                f"missed: below={int((judged['ci_upper'] < truth).sum())} "
                f"above={int((judged['ci_lower'] > truth).sum())} "
                f"mean_width={(judged['ci_upper'] - judged['ci_lower']).mean():.3f} "
                f"mean_vaar_soft={mine['vaar_soft'].mean():.3f} "
                f"failed_draws={(draws - mine['draws_ok']).sum()} seconds={seconds:.0f}",
                flush=True,
            )


def judge(paths: list[str], name: str, instruments, args) -> None:
    """Judge intervals a bench run wrote (--csv-prefix files, several runs pooled) against
    targets computed now: rates for intervals of runs made before a target changed."""
    import pandas as pd

    start = time.perf_counter()
    rows = pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)
    targets = coverage_targets(
        PLANTINGS[name], instruments, sessions=args.sessions, mc_datasets=args.mc_datasets,
        groups=args.groups, seed=args.seed,
    )  # fmt: skip
    bounds = zip(rows["ci_lower"], rows["ci_upper"], strict=True)
    judged = [covered_by(lo, hi, targets) for lo, hi in bounds]
    rows = rows.drop(columns=list(COVERED.values()), errors="ignore")
    rows = rows.join(pd.DataFrame(judged, index=rows.index))
    summarize(name, rows, targets, args.draws, time.perf_counter() - start)


def progress_line(name: str, replicates: int, start: float):
    def report(rep: int, rows: list[dict]) -> None:
        counts = ", ".join(
            f"{m} {sum(bool(r['covered']) for r in rows if r['method'] == m)}/"
            f"{sum(r['method'] == m for r in rows)}"
            for m in INTERVAL_METHODS
        )
        print(
            f"  {name}: replicate {rep + 1}/{replicates} done, {counts} covered so far "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )

    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=10, help="data sets per planting")
    parser.add_argument("--groups", type=int, default=3, help="independent groups per data set")
    parser.add_argument("--sessions", type=int, default=100, help="sessions per group")
    parser.add_argument("--draws", type=int, default=50, help="bootstrap draws per data set")
    parser.add_argument("--items", type=int, default=3, help="items per instrument")
    parser.add_argument("--workers", type=int, default=None, help="local R workers")
    parser.add_argument("--scheduler", default=None, help="Dask scheduler address")
    parser.add_argument(
        "--mc-datasets",
        type=int,
        default=40,
        help="independent data sets for the mean-z target (0: population target only)",
    )
    parser.add_argument("--seed", type=int, default=0, help="first simulation seed")
    parser.add_argument("--only", nargs="*", default=list(PLANTINGS), choices=list(PLANTINGS))
    parser.add_argument(
        "--csv-prefix",
        default="coverage_",
        help="every interval is written to PREFIX<planting>.csv",
    )
    parser.add_argument(
        "--judge",
        nargs="+",
        metavar="CSV",
        help="no refits: judge these intervals (of the one --only planting) against targets "
        "computed now",
    )
    parser.add_argument(
        "--idealized", action="store_true", help="only the no-lavaan interval comparison (seconds)"
    )
    args = parser.parse_args()
    if args.idealized:
        idealized()
        return
    instruments = short_instruments(
        [load_instrument(i) for i in ("iuipc10", "psa", "aods")], args.items
    )
    if args.judge:
        if len(args.only) != 1:
            parser.error("--judge needs exactly one planting in --only")
        judge(args.judge, args.only[0], instruments, args)
        return
    print(
        f"replicates={args.replicates} groups={args.groups} sessions={args.sessions} "
        f"draws={args.draws} items/instrument={args.items} seed={args.seed}"
    )
    with refit_executor(args.scheduler, args.workers) as executor:
        for name in args.only:
            start = time.perf_counter()
            rows, targets = measure_coverage(
                PLANTINGS[name], instruments, replicates=args.replicates, groups=args.groups,
                sessions=args.sessions, draws=args.draws, executor=executor, seed=args.seed,
                mc_datasets=args.mc_datasets,
                progress=progress_line(name, args.replicates, start),
            )  # fmt: skip
            rows.to_csv(f"{args.csv_prefix}{name.replace(' ', '_')}.csv", index=False)
            summarize(name, rows, targets, args.draws, time.perf_counter() - start)


if __name__ == "__main__":
    main()
