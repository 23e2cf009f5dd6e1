"""The reproduction bundle: the exact data vaar fitted, the model as fitted, the arguments as
data (the ones the bridge passes, tables included: vaar.sem.ladder.r_arguments), the r/
functions, and analysis.R, which calls the same R function with the same arguments and prints
(and writes) the same numbers. `Rscript analysis.R` needs only R, lavaan, semTools."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from vaar.errors import VaarError
from vaar.files import atomic_write, write_text
from vaar.sem.bridge import R_DIR, R_FILES
from vaar.sem.grammar import check_model
from vaar.sem.ladder import r_arguments

ANALYSIS_R = r"""# Reproduces vaar's lavaan analysis with plain R: Rscript analysis.R
# Needs R with lavaan and semTools. Nothing here is generated from user input: the model,
# the data and the arguments are read from the files next to this script.
args_all <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", grep("^--file=", args_all, value = TRUE))
here <- if (length(script) == 1) dirname(normalizePath(script)) else getwd()
for (f in list.files(file.path(here, "r"), pattern = "[.]R$")) source(file.path(here, "r", f))

args <- vaar_read_call(here)  # arguments.csv and the tables it names (r/call.R)
classes <- setNames("character", args$group)
data <- read.csv(file.path(here, "data.csv"), colClasses = classes, check.names = FALSE)
syntax <- paste(readLines(file.path(here, "model.lav"), warn = FALSE), collapse = "\n")
result <- do.call(vaar_fit_ladder, c(list(data = data, syntax = syntax), args))

out <- file.path(here, "r_output")
dir.create(out, showWarnings = FALSE)
for (name in c("fits", "estimates", "comparisons", "partial", "equal_paths", "bootstrap",
               "group_fits")) {
  if (!is.null(result[[name]])) {
    write.csv(result[[name]], file.path(out, paste0(name, ".csv")), row.names = FALSE)
  }
}
options(width = 200, digits = 10)
cat("R:", result$versions[["R"]], " lavaan:", result$versions[["lavaan"]],
    " semTools:", result$versions[["semTools"]], "\n\n")
cat("== fit per level\n")
print(result$fits[, c("level", "converged", "npar", "chisq", "df", "chisq.scaled", "cfi",
                      "cfi.robust", "rmsea", "rmsea.robust", "srmr")])
if (!is.null(result$comparisons)) {
  cat("\n== comparisons of adjacent levels\n")
  print(result$comparisons[, c("from", "to", "chisq_diff", "df_diff", "lrt_pvalue", "d_cfi",
                               "d_rmsea", "d_srmr", "holds")])
}
cat("\n== decision: highest level that holds under", result$decision$rule, ":",
    result$decision$highest, "\n")
paths <- result$estimates[result$estimates$op == "~", ]
if (nrow(paths) > 0) {
  cat("\n== structural paths\n")
  print(paths[, c("level", "group", "lhs", "rhs", "est", "se", "z", "pvalue", "std_all")])
}
cat("\nAll tables were written to", out, "\n")
"""


def write_bundle(out_dir, result) -> Path | None:
    """Write the bundle for a SemResult (or anything with a `.sem` SemResult, e.g. a
    StudyResult) into `out_dir`; returns the path of analysis.R, or None when the result
    holds no SEM at all (nothing to reproduce)."""
    sem = getattr(result, "sem", result)
    if sem is None:
        return None
    call = getattr(sem, "call", None)
    data = getattr(sem, "data", None)
    if not call or data is None:
        raise VaarError("this result has no lavaan call to reproduce (it was not fitted by vaar)")
    # analysis.R hands model.lav to lavaan: only a model the allow-list accepts is written
    model = check_model(call["syntax"], source="the model to reproduce")
    out_dir = Path(out_dir)
    try:
        (out_dir / "r").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VaarError(f"cannot create bundle folder {out_dir}: {exc.strerror}") from None
    for name in R_FILES:
        with atomic_write(out_dir / "r" / name) as tmp:
            shutil.copyfile(R_DIR / name, tmp)
    with atomic_write(out_dir / "data.csv", "table") as tmp:
        data.to_csv(tmp, index=False)
    write_text(out_dir / "model.lav", model)
    _write_arguments(out_dir, r_arguments(call["args"]))
    write_text(out_dir / "analysis.R", ANALYSIS_R)
    numbers = json.dumps(sem.to_dict(), indent=1, ensure_ascii=False)
    write_text(out_dir / "vaar_result.json", numbers)
    write_text(
        out_dir / "README.txt",
        "Reproduce vaar's numbers with plain R (lavaan + semTools):\n\n"
        "    Rscript analysis.R\n\n"
        "data.csv is the exact table vaar fitted (after any degenerate items or groups were\n"
        "removed; see vaar_result.json -> diagnostics), model.lav the model as fitted,\n"
        "arguments.csv the other arguments of vaar_fit_ladder() in r/ladder.R (the tables\n"
        "of invariance levels and of the decision rule's criteria in the CSV files it\n"
        "names). The script prints\n"
        "the fit per level, the comparisons, the decision and the structural paths, and writes\n"
        "every table to r_output/. vaar_result.json holds vaar's numbers for comparison.\n",
    )
    return out_dir / "analysis.R"


def _write_arguments(out_dir: Path, args: dict) -> None:
    """The arguments as files r/call.R reads back (vaar_read_call): arguments.csv, one row per
    argument (name, R type, vector or not, value; a vector's elements joined by commas), a
    table as <name>.csv, a dict of numbers (the thresholds) as <name>.csv of name, value."""
    rows = [(name, *_argument(out_dir, name, value)) for name, value in args.items()]
    table = pd.DataFrame(rows, columns=["name", "type", "vector", "value"])
    _write_table(out_dir, "arguments", table)


def _argument(out_dir: Path, name: str, value) -> tuple[str, str, str]:
    """(R type, "TRUE" for a vector, value) of one argument; a table is written beside."""
    if isinstance(value, dict):  # named numbers: the thresholds
        numbers = {"name": list(value), "value": [float(v) for v in value.values()]}
        return "list", "FALSE", _write_table(out_dir, name, pd.DataFrame(numbers))
    if isinstance(value, pd.DataFrame):
        return "table", "FALSE", _write_table(out_dir, name, value)
    if isinstance(value, list | tuple):
        if any("," in str(v) for v in value):
            raise VaarError(f"argument {name} cannot be written to the bundle: {value!r}")
        return "character", "TRUE", ",".join(map(str, value))
    if isinstance(value, bool):
        return "logical", "FALSE", "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return "integer", "FALSE", str(value)
    if isinstance(value, float):
        return "double", "FALSE", repr(value)
    return "character", "FALSE", str(value)


def _write_table(out_dir: Path, name: str, table: pd.DataFrame) -> str:
    path = out_dir / f"{name}.csv"
    with atomic_write(path, "table") as tmp:
        table.to_csv(tmp, index=False)
    return path.name
