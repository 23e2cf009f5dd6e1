"""The reproduction bundle: the exact data vaar fitted, the model as fitted, the arguments as
data, the r/ functions, and analysis.R, which calls the same R function with the same arguments
and prints (and writes) the same numbers. `Rscript analysis.R` needs only R, lavaan, semTools."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from vaar.errors import VaarError
from vaar.files import atomic_write, write_text
from vaar.sem.bridge import R_DIR, R_FILES
from vaar.sem.grammar import check_model

ANALYSIS_R = r"""# Reproduces vaar's lavaan analysis with plain R: Rscript analysis.R
# Needs R with lavaan and semTools. Nothing here is generated from user input: the model,
# the data and the arguments are read from the files next to this script.
args_all <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", grep("^--file=", args_all, value = TRUE))
here <- if (length(script) == 1) dirname(normalizePath(script)) else getwd()
for (f in c("fit.R", "ordinal.R", "ladder.R")) source(file.path(here, "r", f))

a <- read.dcf(file.path(here, "arguments.dcf"), all = TRUE)
arg <- function(name) {
  v <- a[[name]]
  if (is.null(v) || is.na(v) || !nzchar(trimws(v))) character(0) else trimws(strsplit(v, ",")[[1]])
}
group <- arg("group")
classes <- setNames("character", group)
data <- read.csv(file.path(here, "data.csv"), colClasses = classes, check.names = FALSE)
syntax <- paste(readLines(file.path(here, "model.lav"), warn = FALSE), collapse = "\n")
thresholds <- list()
for (k in c("cfi", "rmsea", "srmr_loadings", "srmr_other", "alpha")) {
  v <- arg(paste0("threshold_", k))
  if (length(v) == 1) thresholds[[k]] <- as.numeric(v)
}

result <- vaar_fit_ladder(
  data, syntax, group,
  estimator = arg("estimator"), ordered = arg("ordered"), levels = arg("levels"),
  rule = arg("rule"), thresholds = thresholds, partial = as.logical(arg("partial")),
  max_free = as.integer(arg("max_free")), equal_paths = as.logical(arg("equal_paths")),
  bootstrap = as.integer(arg("bootstrap")), ncpus = as.integer(arg("ncpus")),
  seed = as.integer(arg("seed"))
)

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
    write_text(out_dir / "arguments.dcf", _dcf(call["args"]))
    write_text(out_dir / "analysis.R", ANALYSIS_R)
    numbers = json.dumps(sem.to_dict(), indent=1, ensure_ascii=False)
    write_text(out_dir / "vaar_result.json", numbers)
    write_text(
        out_dir / "README.txt",
        "Reproduce vaar's numbers with plain R (lavaan + semTools):\n\n"
        "    Rscript analysis.R\n\n"
        "data.csv is the exact table vaar fitted (after any degenerate items or groups were\n"
        "removed; see vaar_result.json -> diagnostics), model.lav the model as fitted,\n"
        "arguments.dcf the arguments of vaar_fit_ladder() in r/ladder.R. The script prints\n"
        "the fit per level, the comparisons, the decision and the structural paths, and writes\n"
        "every table to r_output/. vaar_result.json holds vaar's numbers for comparison.\n",
    )
    return out_dir / "analysis.R"


def _dcf(args: dict) -> str:
    """Arguments as a Debian-control-format file (read.dcf in base R): one `key: value` line,
    vectors comma-separated, thresholds as threshold_<name>."""
    lines = []
    for key, value in args.items():
        if key == "thresholds":
            lines += [f"threshold_{k}: {v!r}" for k, v in value.items()]
            continue
        if isinstance(value, bool):
            value = "TRUE" if value else "FALSE"
        elif isinstance(value, list | tuple):
            value = ", ".join(map(str, value))
        if any(c in str(value) for c in "\n,") and not isinstance(args[key], list | tuple):
            raise VaarError(f"argument {key} cannot be written to the bundle: {value!r}")
        lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n"
