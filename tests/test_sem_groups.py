"""Many groups (vaar/sem/r/blocks.R): lavaan's information matrices formed group by group.

1. The matrices themselves (the observed-information Hessian, the first-order information, the
   robust test's traces) against lavaan's own functions on the same fits, for configural,
   metric and labelled models, ML and MLR, listwise and FIML, 2 and 4 groups; lavaan's own for
   a single group.
2. Every number vaar reports for the configural and metric levels (every fit measure, every
   estimate with its SE, z, p, CI and std.all, the per-group chi-squares, the LRT configural vs
   metric) against plain lavaan in Rscript (no vaar code), to 1e-6, on data sets of different
   sizes, estimators and missing-data methods."""

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from vaar.alignment.simulate import short_instruments, simulate_wide
from vaar.data import score_items
from vaar.files import package_path
from vaar.instruments import load_instrument
from vaar.sem import bridge, build_vaar_model, fit_ladder

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")

TOL = 1e-6
INSTRUMENTS = short_instruments([load_instrument(i) for i in ("iuipc10", "psa", "aods")], 3)
MODEL = build_vaar_model(INSTRUMENTS)
PATHS = [(-0.3, 0.3), (0.2, -0.1), (0.0, 0.4), (-0.2, 0.0), (0.3, 0.2)]


def simulated(groups: int, sessions: int, holes: float, seed: int) -> pd.DataFrame:
    """Scored answers of `groups` models; a share `holes` of the answers missing."""
    models = {f"m{g}": PATHS[g % len(PATHS)] for g in range(groups)}
    data = score_items(simulate_wide(models, INSTRUMENTS, sessions=sessions, seed=seed),
                       INSTRUMENTS)  # fmt: skip
    data = data[["model", *MODEL.items]].copy()
    if holes:
        rng = np.random.default_rng(seed)
        values = data[MODEL.items].to_numpy()
        values[rng.random(values.shape) < holes] = np.nan
        data[MODEL.items] = values
    return data


def rscript(script: str, *args, timeout: float = 300) -> str:
    done = subprocess.run(["Rscript", "-e", script, *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# -- 1. the matrices against lavaan's own ---------------------------------------------------------

MATRICES = r"""
suppressPackageStartupMessages(library(lavaan))
a <- commandArgs(trailingOnly = TRUE)
source(a[1])  # blocks.R: puts vaar's functions in lavaan's place, keeps lavaan's own
own_hessian <- environment(lavaan:::lav_model_hessian)$hessian
own_firstorder <- environment(lavaan:::lav_model_information_firstorder)$firstorder
vaar_firstorder <- lavaan:::lav_model_information_firstorder
own_invert <- environment(lavaan:::lav_model_information_augment_invert)$invert
stopifnot(is.function(own_hessian), is.function(own_firstorder))
d <- read.csv(a[2], colClasses = c(model = "character"))
m <- paste(readLines(a[3]), collapse = "\n")
labelled <- sub("=~ ([a-z0-9_]+) \\+ ([a-z0-9_]+)", "=~ \\1 + b*\\2", m)
cases <- list(
  configural = list(), metric_ml = list(group.equal = "loadings", estimator = "ML"),
  labelled = list(model = labelled), fiml = list(missing = "ml"),
  two_groups = list(data = d[d$model %in% c("m0", "m1"), ]),
  one_group = list(data = d[d$model == "m0", ])
)
for (name in names(cases)) {
  args <- list(model = m, data = d, group = "model", estimator = "MLR", se = "none",
               test = "standard", meanstructure = TRUE)
  args[names(cases[[name]])] <- cases[[name]]
  if (name == "one_group") args$group <- NULL
  if (is.null(args$missing)) args$data <- args$data[complete.cases(args$data), ]
  fit <- suppressWarnings(do.call("sem", args))
  common <- list(lavmodel = fit@Model, lavsamplestats = fit@SampleStats, lavdata = fit@Data)
  h_own <- do.call(own_hessian, c(common, list(lavoptions = fit@Options, lavcache = fit@Cache)))
  h_vaar <- do.call(lavaan:::lav_model_hessian,
                    c(common, list(lavoptions = fit@Options, lavcache = fit@Cache)))
  more <- list(lavimplied = fit@implied, lavh1 = fit@h1, lavcache = fit@Cache,
               lavoptions = fit@Options, extra = TRUE)
  f_own <- do.call(own_firstorder, c(common, more))
  f_vaar <- do.call(lavaan:::lav_model_information_firstorder, c(common, more))
  e_inv <- solve(h_own)
  trace <- function(f) vapply(attr(f, "B0.group"), function(b) sum(b * t(e_inv)), 0)
  blocks <- vaar_group_parameters(fit@Model, fit@Data, fit@Options)
  # MLR's sandwich asks for the extra attributes and reads B0.group alone: vaar's first-order
  # information then leaves out the others (r/blocks.R, b0_only); the same sandwich
  sandwich <- function() do.call(lavaan:::lav_model_nvcov_robust_sandwich, c(common, more[1:4]))
  s_vaar <- sandwich()
  utils::assignInNamespace("lav_model_information_firstorder", own_firstorder, ns = "lavaan")
  s_own <- sandwich()
  utils::assignInNamespace("lav_model_information_firstorder", vaar_firstorder, ns = "lavaan")
  # the inverse of the information (and its positive-definiteness check), block by block
  inverse <- function(f) f(lavmodel = fit@Model, information = h_vaar, inverted = TRUE,
                           check.pd = TRUE)
  i_own <- inverse(own_invert)
  i_vaar <- inverse(lavaan:::lav_model_information_augment_invert)
  own_ran <- tryCatch({
    vaar_block_invert(fit@Model, h_vaar, TRUE, TRUE, lavaan_invert = function(...) stop("own"))
    0L
  }, error = function(e) 1L)
  cat(sprintf("%s %d %d %.17g %.17g %.17g %.17g %.17g %.17g %.17g %d %d\n", name,
              fit@Model@nx.free, length(blocks), max(abs(h_own - h_vaar)), max(abs(h_own)),
              max(abs(as.matrix(f_own) - as.matrix(f_vaar))), max(abs(f_own)),
              max(abs(trace(f_own) - trace(f_vaar)) / abs(trace(f_own))),
              max(abs(s_own - s_vaar)) / max(abs(s_own)),
              max(abs(i_own - i_vaar)) / max(abs(i_own)), own_ran,
              as.integer(!is.null(attr(f_vaar, "Delta")))))
}
"""


def test_block_matrices_equal_lavaan_own(tmp_path):
    data, model = tmp_path / "d.csv", tmp_path / "m.lav"
    simulated(4, 70, 0.05, seed=3).to_csv(data, index=False)
    model.write_text(MODEL.syntax)
    rows = {}
    for line in rscript(MATRICES, package_path("sem", "r", "blocks.R"), data, model).splitlines():
        name, npar, groups, *numbers, own_inverse, attached = line.split()
        rows[name] = (int(npar), int(groups), *map(float, numbers))
        assert attached == "1", name  # asked for by another caller: every attribute, as lavaan
        # the inverse block by block where there is no constraint (labels and group.equal
        # are constraints) and more than one group; lavaan's own elsewhere
        assert own_inverse == ("1" if name in ("metric_ml", "labelled", "one_group") else "0")
    assert set(rows) == {"configural", "metric_ml", "labelled", "fiml", "two_groups", "one_group"}
    for name, row in rows.items():
        npar, groups, d_hessian, hessian, d_first, first, d_trace, d_sandwich, d_inverse = row
        # each group's parameters found (a single group: lavaan's own functions run)
        assert groups == {"two_groups": 2, "one_group": 0}.get(name, 4), name
        assert npar > 20 and hessian > 0.1 and first > 0.1, name
        # lavaan's own between-group entries are rounding noise (~1e-13), vaar's exact zeros
        assert d_hessian <= 1e-11 * hessian, (name, d_hessian)
        assert d_first <= 1e-12 * first, (name, d_first)
        assert d_trace <= 1e-12, (name, d_trace)
        assert d_sandwich <= 1e-10, (name, d_sandwich)
        assert d_inverse <= 1e-10, (name, d_inverse)
    assert rows["one_group"][2] == 0.0 and rows["one_group"][4] == 0.0  # lavaan's own, same


# At or near singularity lavaan's own inverse decides: a block that does not solve, and blocks
# each well conditioned whose scales differ so much that the whole matrix is below machine
# precision (lavaan's solve() refuses it), give lavaan's outcome; a well-conditioned matrix
# gives the blocks' inverse.
SINGULAR = r"""
suppressPackageStartupMessages(library(lavaan))
source(commandArgs(trailingOnly = TRUE)[1])
own <- environment(lavaan:::lav_model_information_augment_invert)$invert
d <- HolzingerSwineford1939
fit <- cfa("visual =~ x1 + x2 + x3", d, group = "school", se = "none", test = "standard")
h <- lavaan:::lav_model_hessian(fit@Model, fit@SampleStats, fit@Data, fit@Options, fit@Cache)
p <- vaar_group_parameters(fit@Model, fit@Data)
singular <- h; singular[p[[1]], p[[1]]] <- 0
scaled <- h; scaled[p[[1]], p[[1]]] <- h[p[[1]], p[[1]]] * 1e-17
for (name in c("singular", "scaled", "fine")) {
  m <- switch(name, singular = singular, scaled = scaled, fine = h)
  a <- own(lavmodel = fit@Model, information = m, inverted = TRUE)
  b <- lavaan:::lav_model_information_augment_invert(lavmodel = fit@Model, information = m,
                                                      inverted = TRUE)
  same <- if (inherits(a, "try-error")) inherits(b, "try-error") else max(abs(a - b)) / max(abs(a))
  cat(name, inherits(a, "try-error"), as.numeric(same), "\n")
}
"""


def test_near_singular_information_is_lavaans_own_call():
    rows = {}
    for line in rscript(SINGULAR, package_path("sem", "r", "blocks.R")).splitlines():
        name, failed, same = line.split()
        rows[name] = (failed, float(same))
    assert rows["singular"] == ("TRUE", 1.0) and rows["scaled"] == ("TRUE", 1.0)
    assert rows["fine"][0] == "FALSE" and rows["fine"][1] < 1e-10


# -- 2. every reported number against plain lavaan -------------------------------------------------

PLAIN = r"""
suppressPackageStartupMessages(library(lavaan))
a <- commandArgs(trailingOnly = TRUE)
d <- read.csv(a[1], colClasses = c(model = "character"))
m <- paste(readLines(a[2]), collapse = "\n")
options <- list()  # lavaan's options as vaar passed them, "name=value"
for (p in strsplit(a[-(1:6)], "=", fixed = TRUE)) options[[p[1]]] <- p[2]
levels <- list(configural = "", metric = "loadings")
fits <- list(); pes <- list(); groups <- list()
for (lv in names(levels)) {
  f <- do.call("sem", c(list(model = m, data = d, group = "model",
                             group.equal = levels[[lv]]), options))
  fm <- fitMeasures(f)
  fits[[lv]] <- data.frame(level = lv, as.list(unclass(fm)))
  pe <- parameterEstimates(f, standardized = TRUE, rsquare = TRUE)
  pes[[lv]] <- data.frame(level = lv, group = lavInspect(f, "group.label")[pe$group],
                          lhs = pe$lhs, op = pe$op, rhs = pe$rhs, est = pe$est, se = pe$se,
                          z = pe$z, pvalue = pe$pvalue, ci_lower = pe$ci.lower,
                          ci_upper = pe$ci.upper, std_all = pe$std.all)
  groups[[lv]] <- data.frame(level = lv, group = lavInspect(f, "group.label"),
                             chisq = lavInspect(f, "test")[[1]]$stat.group)
  assign(lv, f)
}
lrt <- lavTestLRT(configural, metric)
write.csv(do.call(rbind, fits), a[3], row.names = FALSE)
write.csv(do.call(rbind, pes), a[4], row.names = FALSE)
write.csv(do.call(rbind, groups), a[5], row.names = FALSE)
write.csv(data.frame(chisq_diff = lrt[2, "Chisq diff"], df_diff = lrt[2, "Df diff"],
                     lrt_pvalue = lrt[2, "Pr(>Chisq)"]), a[6], row.names = FALSE)
"""

CASES = {  # name: (groups, sessions per group, share of answers missing, estimator, seed)
    "3 groups MLR listwise": (3, 120, 0.0, "MLR", 11),
    "6 groups ML listwise": (6, 90, 0.0, "ML", 12),
    "4 groups MLR fiml": (4, 100, 0.04, "MLR", 13),
    "2 groups ML fiml": (2, 150, 0.06, "ML", 14),
}


def assert_close(ours, plain, what):
    ours, plain = np.asarray(ours, float), np.asarray(plain, float)
    assert ours.shape == plain.shape, what
    finite = np.isfinite(ours) & np.isfinite(plain)
    assert np.array_equal(ours[~finite], plain[~finite], equal_nan=True), what
    gap = np.max(np.abs(ours[finite] - plain[finite]), initial=0.0)
    assert gap <= TOL, f"{what}: differs by {gap:.3g}"


@pytest.mark.parametrize("case", list(CASES))
def test_every_reported_number_equals_plain_lavaan(case, tmp_path):
    groups, sessions, holes, estimator, seed = CASES[case]
    data = simulated(groups, sessions, holes, seed)
    result = fit_ladder(data, MODEL.syntax, "model", estimator=estimator,
                        levels=["configural", "metric"], missing="fiml")  # fmt: skip
    assert bridge.call("vaar_use_block_information") is True  # vaar's matrices were used
    assert result.fits["converged"].all()
    csv, model = tmp_path / "d.csv", tmp_path / "m.lav"
    data.to_csv(csv, index=False)
    model.write_text(MODEL.syntax)
    out = [tmp_path / f"{n}.csv" for n in ("fits", "pe", "groups", "lrt")]
    options = [f"{k}={v}" for k, v in result.options.items()]
    assert {"estimator", "missing"} <= set(result.options), options
    rscript(PLAIN, csv, model, *out, *options)

    plain = pd.read_csv(out[0]).set_index("level")
    ours = result.fits.set_index("level").loc[plain.index]
    reported = [c for c in ours.columns if c not in ("converged", "post_check")]
    for column in reported:  # every fit measure vaar reports (NA where lavaan gives none)
        name = column.replace("_", ".")
        theirs = plain[name] if name in plain else np.full(len(plain), np.nan)
        assert_close(ours[column], theirs, f"{case}: {column}")
    assert ours[["chisq", "cfi", "rmsea", "srmr", "bic"]].notna().all().all()

    plain_pe = pd.read_csv(out[1], keep_default_na=False, na_values=["NA"])
    est = result.estimates
    key = ["level", "group", "lhs", "op", "rhs"]
    assert est[key].astype(str).values.tolist() == plain_pe[key].astype(str).values.tolist()
    for column in ("est", "se", "z", "pvalue", "ci_lower", "ci_upper", "std_all"):
        assert_close(est[column], plain_pe[column], f"{case}: {column}")

    plain_groups = pd.read_csv(out[2])
    assert result.group_fits["group"].tolist() == plain_groups["group"].tolist()
    assert_close(result.group_fits["chisq"], plain_groups["chisq"], f"{case}: group chisq")

    lrt = pd.read_csv(out[3]).iloc[0]
    first = result.comparisons.iloc[0]
    for column in ("chisq_diff", "df_diff", "lrt_pvalue"):
        assert_close(first[column], lrt[column], f"{case}: {column}")
