"""Benchmark of the invariance ladder (issue 15; prints measured ratios, not a test).

1. vaar vs plain serial Rscript: the demo-shaped ladder (4 groups x 200 sessions, MLR,
   listwise, configural..strict) through vaar.sem.fit_ladder, against the same lavaan calls
   written by hand in one plain Rscript process, one level after another (sem() with lavaan's
   default baseline, fitMeasures(), parameterEstimates(standardized = TRUE, rsquare = TRUE),
   summary(), lavTestLRT() of adjacent levels). Wall and CPU (R's forked level workers
   included), the lavaan part only (R start-up and loading lavaan are shown apart).
2. FIML vs listwise: the same ladder with 3 % of the answers missing completely at random,
   fitted by FIML with vaar's default information (`information = "h1"`) and with lavaan's
   own (`"lavaan"`: observed information from a numerical Hessian), against listwise deletion
   of the same data, all through vaar.

    .venv/bin/python bench/bench_ladder.py                  # 12 items: about 2-4 minutes
    .venv/bin/python bench/bench_ladder.py --items 10,16,12 # the demo's 38 items: much longer
    .venv/bin/python bench/bench_ladder.py --skip-lavaan-fiml  # without the slow FIML fit

Ratios are of medians over --repeats runs; on a machine shared with other work both sides
slow down, so read the CPU ratios first.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GROUPS, SESSIONS = 4, 200


def simulate(items: list[int], seed: int, share_missing: float = 0.0) -> pd.DataFrame:
    """Likert answers 1-5 of three correlated factors (P, S and A = f(P, S)), `items` per
    factor, in GROUPS groups of SESSIONS sessions; `share_missing` removed at random."""
    rng = np.random.default_rng(seed)
    cov = [[1, 0.3, -0.3], [0.3, 1, -0.2], [-0.3, -0.2, 1]]
    frames = []
    for g in range(GROUPS):
        eta = rng.multivariate_normal([0, 0, 0], cov, SESSIONS)
        cols: dict = {"group": f"g{g + 1}"}
        for f, (name, n) in enumerate(zip("psa", items, strict=True)):
            for i in range(1, n + 1):
                x = 3 + 0.7 * eta[:, f] + rng.normal(0, np.sqrt(0.51), SESSIONS)
                cols[f"{name}{i}"] = np.clip(np.round(x), 1, 5)
        frames.append(pd.DataFrame(cols))
    data = pd.concat(frames, ignore_index=True)
    item_columns = [c for c in data.columns if c != "group"]
    holes = rng.random((len(data), len(item_columns))) < share_missing
    data[item_columns] = data[item_columns].mask(holes)
    return data


def model(items: list[int]) -> str:
    lines = [
        f"{factor} =~ " + " + ".join(f"{name}{i}" for i in range(1, n + 1))
        for factor, name, n in zip(("P", "S", "A"), "psa", items, strict=True)
    ]
    return "\n".join([*lines, "A ~ P + S"])


# The same lavaan calls by hand, serially, in one plain R process.
PLAIN = r"""
suppressPackageStartupMessages(library(lavaan))
a <- commandArgs(trailingOnly = TRUE)
d <- read.csv(a[1], colClasses = c(group = "character"))
m <- paste(readLines(a[2]), collapse = "\n")
eq <- list(configural = "", metric = "loadings", scalar = c("loadings", "intercepts"),
           strict = c("loadings", "intercepts", "residuals"))
t <- system.time({
  fits <- list()
  for (lv in names(eq)) {
    f <- sem(m, d, group = "group", estimator = "MLR", missing = "listwise",
             group.equal = eq[[lv]])
    fm <- fitMeasures(f)
    pe <- parameterEstimates(f, standardized = TRUE, rsquare = TRUE)
    s <- capture.output(summary(f, standardized = TRUE, rsquare = TRUE))
    fits[[lv]] <- f
  }
  for (i in 2:length(fits)) lrt <- lavTestLRT(fits[[i - 1]], fits[[i]])
})
cat("WALL", t[["elapsed"]], "CPU", sum(t[c(1, 2, 4, 5)], na.rm = TRUE), "\n")
"""


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (R's forked level workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn) -> tuple[float, float]:
    start, cpu = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - start, cpu_seconds() - cpu


def plain_rscript(data: pd.DataFrame, syntax: str) -> tuple[float, float, float]:
    """(lavaan wall, lavaan CPU, whole process wall) of the plain serial script."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp, name) for name in ("d.csv", "m.lav", "plain.R")]
        data.to_csv(paths[0], index=False)
        paths[1].write_text(syntax)
        paths[2].write_text(PLAIN)
        start = time.perf_counter()
        done = subprocess.run(
            ["Rscript", str(paths[2]), str(paths[0]), str(paths[1])],
            capture_output=True, text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        )  # fmt: skip  # one BLAS thread, as vaar's R (vaar.sem.bridge)
        total = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    words = done.stdout.split()
    return float(words[words.index("WALL") + 1]), float(words[words.index("CPU") + 1]), total


def median_pair(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def vaar_vs_rscript(items: list[int], repeats: int) -> list[tuple[str, float, float, str]]:
    from vaar.sem import bridge, fit_ladder

    data, syntax = simulate(items, seed=1), model(items)
    startup, _ = timed(lambda: bridge.call("vaar_parse", "f =~ a + b"))
    vaar_runs, plain_runs, totals = [], [], []
    for _ in range(repeats):  # paired, alternating
        vaar_runs.append(timed(lambda: fit_ladder(data, syntax, "group", missing="listwise")))
        wall, cpu, total = plain_rscript(data, syntax)
        plain_runs.append((wall, cpu))
        totals.append(total - wall)
    (v_wall, v_cpu), (r_wall, r_cpu) = median_pair(vaar_runs), median_pair(plain_runs)
    print(f"\n== 1. demo-shaped ladder: {GROUPS} groups x {SESSIONS}, {sum(items)} items, MLR, "
          f"listwise, 4 levels; medians of {repeats} paired runs")  # fmt: skip
    print(f"vaar (rpy2, levels forked on {os.cpu_count()} cores): wall {v_wall:.2f} s, CPU "
          f"{v_cpu:.2f} s (embedded R start-up {startup:.2f} s apart)")  # fmt: skip
    print(f"plain serial Rscript:  wall {r_wall:.2f} s, CPU {r_cpu:.2f} s (R start-up, lavaan "
          f"load and CSV {statistics.median(totals):.2f} s apart)")  # fmt: skip
    return [
        ("ladder wall: vaar / plain serial Rscript", v_wall / r_wall, 0.75, "<="),
        ("ladder CPU: vaar / plain serial Rscript", v_cpu / r_cpu, 1.05, "<="),
    ]


def fiml_vs_listwise(items: list[int], repeats: int, lavaan_fiml: bool) -> list[tuple]:
    from vaar.sem import bridge, fit_ladder

    bridge.call("vaar_parse", "f =~ a + b")  # R started and lavaan loaded before timing
    data, syntax = simulate(items, seed=3, share_missing=0.03), model(items)
    ways = {"listwise": {"missing": "listwise"}, "FIML, h1 (vaar's default)": {}}
    if lavaan_fiml:
        ways["FIML, lavaan's default"] = {"information": "lavaan"}
    times: dict[str, list] = {name: [] for name in ways}
    for rep in range(repeats):
        for name, how in ways.items():
            if rep and name == "FIML, lavaan's default":
                continue  # once: it is by far the slowest
            times[name].append(timed(lambda how=how: fit_ladder(data, syntax, "group", **how)))
    print(f"\n== 2. FIML vs listwise: the same ladder, {sum(items)} items, 3 % missing at random")
    for name, runs in times.items():
        wall, cpu = median_pair(runs)
        print(f"{name:<28} wall {wall:7.2f} s  CPU {cpu:7.2f} s  ({len(runs)} run(s))")
    base = median_pair(times["listwise"])[0]
    rows = [("FIML h1 (default) / listwise, wall", median_pair(times[
        "FIML, h1 (vaar's default)"])[0] / base, 3.0, "<=")]  # fmt: skip
    if lavaan_fiml:
        rows.append(("FIML lavaan default / listwise, wall",
                     median_pair(times["FIML, lavaan's default"])[0] / base, None, ""))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="4,4,4", help="items per factor (P, S, A)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-lavaan-fiml", action="store_true")
    args = parser.parse_args()
    items = [int(n) for n in args.items.split(",")]
    if len(items) != 3 or min(items) < 2:
        raise SystemExit("--items: three numbers >= 2, e.g. 10,16,12")
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    rows = vaar_vs_rscript(items, args.repeats)
    rows += fiml_vs_listwise(items, args.repeats, not args.skip_lavaan_fiml)
    print(f"\n== ratios (load average now {os.getloadavg()[0]:.1f})")
    print(f"{'what':<44} {'ratio':>7}  target")
    for what, ratio, target, op in rows:
        met = "" if target is None else f"{op} {target}  {'met' if ratio <= target else 'NOT met'}"
        print(f"{what:<44} {ratio:>7.3f}  {met}")


if __name__ == "__main__":
    main()
