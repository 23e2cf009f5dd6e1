"""Wald vs likelihood-ratio sign evidence on collected answers (prints measured numbers).

Fits the study's SEM once (its own analysis settings), scores VAAR with the Wald z and with the
signed likelihood-ratio z (analysis.evidence = "lrt", docs/vaar.md "Sign evidence"), and prints
VAAR_soft, VAAR_hard and VAAR_logloss per model for both, and the wall time of the LR refits.
INPUT is anything `vaar analyze` takes: a collection store, a study file or folder, a table;
without it (as `make bench` runs it) the demo study is collected into a temporary folder first.

    .venv/bin/python bench/bench_evidence.py                 # the demo's four simulated models
    .venv/bin/python bench/bench_evidence.py reports/smollm2/collection.sqlite
    .venv/bin/python bench/bench_evidence.py STORE --workers 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METRICS = ["vaar_soft", "vaar_hard", "vaar_logloss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "input", type=Path, nargs="?", help="store, study file/folder or table (default: demo)"
    )
    parser.add_argument("--workers", type=int, default=None, help="R workers (default: cores)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.input is None:
            args.input = collect_demo(Path(tmp))
        compare(args)


def collect_demo(folder: Path) -> Path:
    """The demo study collected (simulated, offline) into `folder`: its store."""
    text = (ROOT / "data" / "examples" / "demo.toml").read_text()
    study = folder / "demo.toml"
    study.write_text(text.replace('output_dir = "reports/demo"', f'output_dir = "{folder}/out"'))
    vaar = [sys.executable, "-c", "from vaar.cli import main; main()"]
    subprocess.run([*vaar, "collect", str(study), "--no-progress"], check=True)
    return folder / "out" / "collection.sqlite"


def compare(args) -> None:
    """Fit once, score with Wald and with LRT evidence, print both."""
    from vaar.alignment import align, load_reference, refit_executor
    from vaar.config import AnalysisSpec
    from vaar.data.inputs import find_jobs, load_job
    from vaar.pipeline import analyze_tables

    loaded = load_job(find_jobs([args.input])[0])
    analysis = loaded.study.analysis if loaded.study else AnalysisSpec()
    analysis = analysis.model_copy(update={"evidence": "wald", "bootstrap": 0})
    start = time.perf_counter()
    result = analyze_tables(
        loaded.study, loaded.wide, loaded.instruments, long=loaded.long, analysis=analysis
    )
    print(f"fit + Wald VAAR: {time.perf_counter() - start:.1f} s")
    level = result.alignment.level
    with refit_executor(workers=args.workers) as pool:
        start = time.perf_counter()
        lrt = align(
            result.sem, result.model.paths, load_reference(analysis.reference), level=level,
            standardized=result.alignment.standardized, alpha=result.alignment.alpha,
            human_group=analysis.human_group, evidence="lrt", executor=pool,
        )  # fmt: skip
        seconds = time.perf_counter() - start
    wald = result.alignment.scores.set_index("model")[METRICS]
    table = wald.join(lrt.scores.set_index("model")[METRICS], lsuffix="_wald", rsuffix="_lrt")
    info = lrt.evidence_info
    print(f"\nlevel {level}; LR refits: {info.refits} ({info.lrt_method}) in {info.seconds:.1f} s "
          f"({seconds:.1f} s with scoring; workers already started)")  # fmt: skip
    with pd.option_context("display.width", 200, "display.precision", 4):
        print(table)
        paths = lrt.evidence[["model", "lhs", "rhs", "est", "wald_z", "z", "note"]]
        print(paths.to_string(index=False))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "level": level,
                    "lrt": info.to_dict(),
                    "scores": table.reset_index().to_dict("records"),
                },
                indent=2,
                default=str,
            )  # fmt: skip
        )


if __name__ == "__main__":
    main()
