"""Benchmark: time and peak memory of one configural fit as the number of groups grows (issue 15:
<= linear in G, <= 1 GB at 16). Prints measured numbers; not a test.

The demo protocol's model (iuipc10, psa, aods: 38 items), 200 simulated sessions per group,
MLR, complete answers (listwise), configural level only, G = 4, 8, 16. Each fit runs in its own
process, whose peak resident memory (VmHWM) is read at its end:

  old    plain Rscript: vaar's R functions without r/blocks.R (lavaan's own information
         matrices), on the reproduction bundle of the same analysis
  new    the same Rscript with r/blocks.R (vaar's group-by-group matrices)
  vaar   vaar.sem.fit_ladder through rpy2 (what `vaar run` does), with r/blocks.R

Times are wall and CPU seconds of the fit (R start-up and reading the data apart); the exponent
is the least-squares slope of log(time) on log(G). CPU seconds are the fairer measure on a
shared machine.

    .venv/bin/python bench/bench_groups.py                # G = 4 8 16: ~6 minutes on 2 cores
    .venv/bin/python bench/bench_groups.py --groups 4 8   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PYTHON = sys.executable
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}  # as vaar's R processes run

# The fit through vaar in a fresh process: writes the bundle and prints its measurements.
VAAR = r"""
import json, resource, sys, time
import pandas as pd
from vaar.sem import bridge, fit_ladder, write_bundle
data, model, bundle = pd.read_csv(sys.argv[1]), open(sys.argv[2]).read(), sys.argv[3]
bridge.call("vaar_parse", "f =~ a + b")  # R started, lavaan loaded, r/ sourced
usage = lambda: sum(getattr(resource.getrusage(resource.RUSAGE_SELF), k)
                    for k in ("ru_utime", "ru_stime"))
start, cpu = time.perf_counter(), usage()
result = fit_ladder(data, model, "model", estimator="MLR", levels=["configural"],
                    missing="listwise")
wall, cpu = time.perf_counter() - start, usage() - cpu
write_bundle(bundle, result)
peak = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({"wall": wall, "cpu": cpu, "peak_kb": int(peak),
                  "chisq_scaled": float(result.fits["chisq_scaled"].iloc[0])}))
"""

# The same call in plain Rscript on the bundle (its r/ files, data and arguments).
PLAIN = r"""
here <- commandArgs(trailingOnly = TRUE)[1]
for (f in list.files(file.path(here, "r"), pattern = "[.]R$")) source(file.path(here, "r", f))
args <- vaar_read_call(here)
d <- read.csv(file.path(here, "data.csv"), colClasses = setNames("character", args$group))
m <- paste(readLines(file.path(here, "model.lav")), collapse = "\n")
t <- system.time(r <- do.call(vaar_fit_ladder, c(list(data = d, syntax = m), args)))
peak <- sub("VmHWM:\\s*([0-9]+).*", "\\1", grep("^VmHWM", readLines("/proc/self/status"),
                                                 value = TRUE))
cat(sprintf('{"wall": %.3f, "cpu": %.3f, "peak_kb": %s, "chisq_scaled": %.10f}\n',
            t[["elapsed"]], sum(t[c("user.self", "sys.self")]), peak,
            r$fits$chisq.scaled[1]))
"""


def simulated(groups: int, sessions: int, folder: Path) -> tuple[Path, Path]:
    """The demo's items for `groups` simulated models, scored, as CSV, and the vaar model."""
    from vaar.alignment.simulate import simulate_wide
    from vaar.data import score_items
    from vaar.instruments import load_instrument
    from vaar.sem import build_vaar_model

    instruments = [load_instrument(i) for i in ("iuipc10", "psa", "aods")]
    model = build_vaar_model(instruments)
    paths = [(-0.3, 0.3), (0.2, -0.1), (0.0, 0.4), (-0.2, 0.0)]
    models = {f"m{g:02d}": paths[g % len(paths)] for g in range(groups)}
    data = score_items(simulate_wide(models, instruments, sessions=sessions, seed=groups),
                       instruments)  # fmt: skip
    csv, syntax = folder / "data.csv", folder / "model.lav"
    data[["model", *model.items]].to_csv(csv, index=False)
    syntax.write_text(model.syntax)
    return csv, syntax


def run(command: list[str]) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, env=ENV)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(groups: int, sessions: int, folder: Path) -> dict[str, dict]:
    csv, syntax = simulated(groups, sessions, folder)
    bundle = folder / "bundle"
    out = {"vaar": run([PYTHON, "-c", VAAR, str(csv), str(syntax), str(bundle)])}
    script = folder / "plain.R"
    script.write_text(PLAIN)
    out["new"] = run(["Rscript", str(script), str(bundle)])
    old = folder / "bundle_old"
    shutil.copytree(bundle, old)
    (old / "r" / "blocks.R").unlink()
    out["old"] = run(["Rscript", str(script), str(old)])
    return out


def slope(groups: list[int], values: list[float]) -> float:
    return float(np.polyfit(np.log(groups), np.log(values), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--sessions", type=int, default=200)
    args = parser.parse_args()
    print(f"== groups: configural MLR, 38 items, {args.sessions} sessions per group, listwise")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for g in args.groups:
            folder = Path(tmp, f"g{g}")
            folder.mkdir()
            rows[g] = measure(g, args.sessions, folder)
            chisq = {k: v["chisq_scaled"] for k, v in rows[g].items()}
            assert max(chisq.values()) - min(chisq.values()) < 1e-6, chisq
            for path in ("old", "new", "vaar"):
                r = rows[g][path]
                print(f"G={g:>3} {path:>4}: wall {r['wall']:7.2f} s  CPU {r['cpu']:7.2f} s  "
                      f"peak {r['peak_kb'] / 1024:7.0f} MB", flush=True)  # fmt: skip
    if len(args.groups) > 1:
        print("exponent of time in G (log-log slope), CPU / wall; peak memory's:")
        for path in ("old", "new", "vaar"):
            cpu = slope(args.groups, [rows[g][path]["cpu"] for g in args.groups])
            wall = slope(args.groups, [rows[g][path]["wall"] for g in args.groups])
            peak = slope(args.groups, [rows[g][path]["peak_kb"] for g in args.groups])
            print(f"  {path:>4}: CPU G^{cpu:.2f}, wall G^{wall:.2f}, memory G^{peak:.2f}")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
