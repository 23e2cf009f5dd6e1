"""FIML's information matrix (vaar.invariance.FIML_INFORMATION, `information=`): with each
choice, every number vaar reports (estimates, SEs, fit measures, LRTs) equals the same lavaan
call in plain Rscript to 1e-6, the choice reaches the bundle, the CLI and the record of what
lavaan used, and listwise fits are untouched by it. Data: HolzingerSwineford1939 with 5 % of
the answers removed."""

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from markupsafe import Markup

from vaar import invariance
from vaar.errors import VaarError
from vaar.report.document import build_estimates
from vaar.report.html import render_html
from vaar.result import StudyResult
from vaar.sem import fit_ladder, write_bundle
from vaar.sem.result import FIT_COLUMNS

pytestmark = pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")

MODEL = """
visual  =~ x1 + x2 + x3
textual =~ x4 + x5 + x6
speed   =~ x7 + x8 + x9
speed ~ visual + textual
"""
LEVELS = ["configural", "metric"]
MEASURES = [c for c in FIT_COLUMNS if c not in ("level", "converged", "post_check")]
TOL = 1e-6

# The same lavaan calls written by hand: sem() per level with cumulative group.equal and the
# options given as name=value arguments, lavaan's default baseline, fitMeasures,
# parameterEstimates and lavTestLRT of adjacent levels.
PLAIN = r"""
suppressPackageStartupMessages(library(lavaan))
a <- commandArgs(trailingOnly = TRUE)
d <- read.csv(a[1], colClasses = c(school = "character"))
m <- paste(readLines(a[2]), collapse = "\n")
opts <- list(estimator = "MLR", missing = a[3])
for (p in strsplit(a[-(1:6)], "=", fixed = TRUE)) opts[[p[1]]] <- p[2]
eq <- list(configural = "", metric = "loadings")
measures <- strsplit(a[6], ",")[[1]]
fits <- list(); pes <- list(); f <- list()
for (lv in names(eq)) {
  f[[lv]] <- do.call("sem", c(list(model = m, data = d, group = "school",
                                   group.equal = eq[[lv]]), opts))
  fm <- fitMeasures(f[[lv]])
  fits[[lv]] <- data.frame(level = lv, as.list(unclass(fm)[measures]))
  pe <- parameterEstimates(f[[lv]], standardized = TRUE, rsquare = TRUE)
  pes[[lv]] <- data.frame(level = lv, group = lavInspect(f[[lv]], "group.label")[pe$group],
                          lhs = pe$lhs, op = pe$op, rhs = pe$rhs, est = pe$est, se = pe$se,
                          z = pe$z, pvalue = pe$pvalue, ci_lower = pe$ci.lower,
                          ci_upper = pe$ci.upper, std_all = pe$std.all)
}
lrt <- function(x, y) {
  t <- lavTestLRT(f[[x]], f[[y]])
  data.frame(chisq_diff = t[2, "Chisq diff"], df_diff = t[2, "Df diff"],
             lrt_pvalue = t[2, "Pr(>Chisq)"])
}
write.csv(do.call(rbind, fits), a[4], row.names = FALSE)
write.csv(do.call(rbind, pes), a[5], row.names = FALSE)
write.csv(lrt("configural", "metric"), sub("[.]csv$", "_lrt.csv", a[4]), row.names = FALSE)
"""


def rscript(*args, cwd=None) -> str:
    done = subprocess.run(
        ["Rscript", *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def assert_close(a, b, what):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape, what
    assert np.allclose(a, b, rtol=0, atol=TOL, equal_nan=True), f"{what}: {a} vs {b}"


@pytest.fixture(scope="module")
def holes(tmp_path_factory) -> pd.DataFrame:
    path = tmp_path_factory.mktemp("hs") / "hs.csv"
    rscript(
        "-e",
        f'd <- lavaan::HolzingerSwineford1939; write.csv(d[, c("school", paste0("x", 1:9))], '
        f'"{path}", row.names = FALSE)',
    )
    data = pd.read_csv(path)
    items = [f"x{i}" for i in range(1, 10)]
    mask = np.random.default_rng(3).random((len(data), len(items))) < 0.05
    data[items] = data[items].mask(mask)
    return data


def plain(holes, tmp_path, missing: str, options: dict[str, str]):
    data, model, script = tmp_path / "d.csv", tmp_path / "m.lav", tmp_path / "plain.R"
    holes.to_csv(data, index=False)
    model.write_text(MODEL)
    script.write_text(PLAIN)
    fits, pe = tmp_path / "fits.csv", tmp_path / "pe.csv"
    measures = ",".join(c.replace("_", ".") for c in MEASURES)
    pairs = [f"{k}={v}" for k, v in options.items()]
    rscript(script, data, model, missing, fits, pe, measures, *pairs)
    plain_pe = pd.read_csv(pe, keep_default_na=False, na_values=["NA"])
    return pd.read_csv(fits), plain_pe, pd.read_csv(tmp_path / "fits_lrt.csv")


def assert_equal_to_plain(result, plain_fits, plain_pe, plain_lrt):
    fits = result.fits.set_index("level").loc[LEVELS]
    for column in MEASURES:
        assert_close(fits[column], plain_fits[column.replace("_", ".")], column)
    est = result.estimates
    assert list(est["lhs"] + est["op"] + est["rhs"] + est["group"]) == list(
        plain_pe["lhs"] + plain_pe["op"] + plain_pe["rhs"] + plain_pe["group"]
    )
    for column in ("est", "se", "z", "pvalue", "ci_lower", "ci_upper", "std_all"):
        assert_close(est[column], plain_pe[column], column)
    for column in ("chisq_diff", "df_diff", "lrt_pvalue"):
        assert_close(result.comparisons[column], plain_lrt[column], column)


@pytest.mark.parametrize("choice", invariance.INFORMATION)
def test_fiml_numbers_equal_the_same_plain_lavaan_call(holes, tmp_path, choice):
    result = fit_ladder(holes, MODEL, "school", levels=LEVELS, information=choice)
    assert result.diagnostics["missing"] == "ml" and result.fits["converged"].all()
    assert_equal_to_plain(result, *plain(holes, tmp_path, "ml", invariance.fiml_options(choice)))
    used = result.diagnostics["information"]
    assert used["choice"] == choice and used["se"] == used["test"] == "observed"
    assert used["observed"] == {"h1": "h1", "lavaan": "hessian"}[choice]
    how = {"h1": "analytically from the unrestricted (h1) model", "lavaan": "numerical Hessian"}
    assert how[choice] in used["text"] and f"information = '{choice}'" in used["text"]
    assert json.loads(json.dumps(result.to_dict()))["diagnostics"]["information"] == used
    # estimates.json and the HTML report state it
    doc = build_estimates(
        StudyResult.from_analysis(
            name="fiml", study=None, instruments=[], wide=holes.rename(columns={"school": "model"}),
            long=None, collection=None, model=MODEL, sem=result,
        )
    )  # fmt: skip
    assert doc["diagnostics"]["other"]["information"] == used
    page = render_html(doc)
    text = str(Markup.escape(used["text"]))
    assert f'<p id="information">lavaan fitted with missing = “ml” and used {text}.' in page
    # the reproduction bundle makes the same call: the choice is among its arguments
    script = write_bundle(tmp_path / "bundle", result)
    arguments = pd.read_csv(script.parent / "arguments.csv", keep_default_na=False)
    row = arguments.set_index("name").loc["fiml_options"]
    wanted = ",".join(f"{k}={v}" for k, v in invariance.fiml_options(choice).items())
    assert (row["type"], row["value"]) == ("character", wanted)
    rscript(script, cwd="/")
    again = pd.read_csv(script.parent / "r_output" / "fits.csv")
    for column in ("chisq_scaled", "cfi_robust", "rmsea_robust", "srmr"):
        assert_close(result.fits[column], again[column.replace("_", ".")], column)
    est = pd.read_csv(script.parent / "r_output" / "estimates.csv", keep_default_na=False,
                      na_values=["NA"])  # fmt: skip
    assert_close(result.estimates["se"], est["se"], "bundle se")


def test_the_two_choices_differ_and_listwise_ignores_them(holes, tmp_path):
    h1, lav = (fit_ladder(holes, MODEL, "school", levels=["configural"], information=choice)
               for choice in invariance.INFORMATION)  # fmt: skip
    assert np.allclose(h1.estimates["est"], lav.estimates["est"], atol=1e-6)  # same estimates
    assert not np.allclose(h1.estimates["se"], lav.estimates["se"], atol=1e-6)  # other SEs
    listwise = [
        fit_ladder(holes, MODEL, "school", levels=LEVELS, missing="listwise", information=c)
        for c in invariance.INFORMATION
    ]
    pd.testing.assert_frame_equal(listwise[0].fits, listwise[1].fits)
    pd.testing.assert_frame_equal(listwise[0].estimates, listwise[1].estimates)
    assert "choice" not in listwise[0].diagnostics["information"]  # no FIML, no choice made
    # and listwise equals plain lavaan's listwise call, with lavaan's own information
    assert_equal_to_plain(listwise[0], *plain(holes, tmp_path, "listwise", {}))


def test_unknown_choice_is_one_clear_error(holes):
    with pytest.raises(VaarError, match=r"unknown information choice 'exact' \(known: h1, "):
        fit_ladder(holes, MODEL, "school", information="exact")


def test_the_choice_is_an_option_of_the_study_and_both_commands():
    from click import Choice

    from vaar.commands import analyze
    from vaar.config import AnalysisSpec
    from vaar.sem.commands import sem_fit

    assert AnalysisSpec().information == invariance.INFORMATION[0] == "h1"
    with pytest.raises(ValueError, match="information"):
        AnalysisSpec(information="hessian")
    for command in (analyze, sem_fit):
        params = {p.name: p for p in command.params}
        assert isinstance(params["information"].type, Choice), command.name
        assert tuple(params["information"].type.choices) == invariance.INFORMATION


# vaar's FIML h1 Hessian (r/fit.R: the duplication applied once, after the sum over the missing
# patterns) against lavaan's own function, with the h1 moments and with other moments, and
# with an exogenous covariate (x.idx); and fitMeasures' FIML correction computed once.
HESSIAN = r"""
for (f in list.files(commandArgs(TRUE)[1], pattern = "[.]R$", full.names = TRUE)) source(f)
d <- lavaan::HolzingerSwineford1939
set.seed(3); for (v in paste0("x", 1:9)) d[[v]][runif(nrow(d)) < .1] <- NA
f0 <- sem("visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6", d, group = "school",
          missing = "ml", do.fit = FALSE)
worst <- 0
for (g in 1:2) {
  Yp <- f0@SampleStats@missing[[g]]; h1 <- f0@SampleStats@missing.h1[[g]]
  S <- h1$sigma * 1.1 + diag(0.2, nrow(h1$sigma))
  for (case in list(list(h1$mu, h1$sigma, NULL), list(h1$mu + 0.3, S, NULL),
                    list(h1$mu, S, c(2L, 5L)))) {
    a <- vaar_fiml_hessian_lavaan(Yp = Yp, Mu = case[[1]], Sigma = case[[2]], x.idx = case[[3]])
    b <- vaar_fiml_hessian(Yp = Yp, Mu = case[[1]], Sigma = case[[2]], x.idx = case[[3]])
    worst <- max(worst, max(abs(a - b)) / max(abs(a)))
  }
}
cat("PATTERNS", length(f0@SampleStats@missing[[1]]), "WORST", worst, "\n")
"""


def test_fiml_hessian_equals_lavaans_own_function():
    from vaar.sem.bridge import R_DIR

    words = rscript("-e", HESSIAN, R_DIR).split()
    assert int(words[words.index("PATTERNS") + 1]) > 20  # many missing-data patterns
    assert float(words[words.index("WORST") + 1]) < 1e-12  # relative, rounding only


# vaar's R functions, HolzingerSwineford1939 with 8 % of its answers missing, its model
R_PRELUDE = r"""
for (f in list.files(commandArgs(TRUE)[1], pattern = "[.]R$", full.names = TRUE)) source(f)
d <- lavaan::HolzingerSwineford1939
set.seed(4); for (v in paste0("x", 1:9)) d[[v]][runif(nrow(d)) < .08] <- NA
m <- "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9
      speed ~ visual + textual"
"""

# vaar's FIML-corrected robust statistics (r/fiml.R: the traces by group blocks, the
# independence model with its standard test only) and its NA-aware crossprod, against
# lavaan's own functions: one group and two, free and constrained across groups (E.inv then
# couples the groups), an exogenous covariate, both versions of the correction.
CORRECTED = (
    R_PRELUDE
    + r"""
fits <- list(
  sem(m, d, missing = "ml", estimator = "MLR"),
  sem(m, d, group = "school", missing = "ml", estimator = "MLR"),
  sem(m, d, group = "school", group.equal = c("loadings", "intercepts"), missing = "ml"),
  sem(paste(m, "\nspeed ~ ageyr"), d, group = "school", missing = "ml", estimator = "MLR")
)
worst <- 0; n <- 0
for (fit in fits) for (v in c("V3", "V6")) {
  a <- unlist(vaar_fiml_corrected_lavaan(fit, v)); b <- unlist(vaar_fiml_corrected(fit, v))
  stopifnot(names(a) == names(b), !anyNA(a[c("c.hat3", "c.hat3.null")]))
  worst <- max(worst, abs(a - b) / abs(a)); n <- n + 1
}
cat("CORRECTED", n, "WORST", worst, "\n")
cp <- 0
for (i in 1:20) {
  A <- matrix(rnorm(60), 12); A[runif(60) < .2] <- NA
  B <- matrix(rnorm(36), 12); if (i %% 2) B[runif(36) < .2] <- NA
  for (args in list(list(A), list(A, B), list(A[, 1], B), list(B))) {
    cp <- max(cp, abs(do.call(vaar_crossprod_lavaan, args) - do.call(vaar_crossprod_na, args)))
  }
}
cat("CROSSPROD", cp, "\n")
"""
)


def test_fiml_correction_and_crossprod_equal_lavaans_own_functions():
    from vaar.sem.bridge import R_DIR

    words = rscript("-e", CORRECTED, R_DIR).split()
    assert int(words[words.index("CORRECTED") + 1]) == 8
    assert float(words[words.index("WORST") + 1]) < 1e-10  # relative, rounding only
    assert float(words[words.index("CROSSPROD") + 1]) < 1e-12


AHEAD = (
    R_PRELUDE
    + r"""
fit <- function(est, equal, baseline) {
  sem(m, d, group = "school", missing = "ml", estimator = est, group.equal = equal,
      baseline = baseline)
}
worst <- 0; versions <- character(0)
for (est in c("MLR", "ML")) for (equal in list("", "loadings", c("loadings", "intercepts"))) {
  base <- fit(est, "", TRUE)
  level <- fit(est, equal, FALSE)
  ahead <- vaar_fiml_ahead(level)           # before the baseline is there, as a level worker
  versions <- c(versions, names(ahead))
  lent <- vaar_lend_baseline(level, base)
  plain <- fitMeasures(fit(est, equal, TRUE), VAAR_FIT_MEASURES)   # lavaan alone
  for (got in list(vaar_fit_measures(lent, ahead), vaar_fit_measures(lent))) {
    worst <- max(worst, abs(got - plain[names(got)]) / pmax(1, abs(plain[names(got)])),
                 na.rm = TRUE)
  }
}
# the values handed in are the ones used: a wrong one shows in the robust measures
wrong <- ahead; wrong[[1]]$c.hat3 <- 2 * wrong[[1]]$c.hat3
moved <- vaar_fit_measures(lent, wrong)["rmsea.robust"] != vaar_fit_measures(lent)["rmsea.robust"]
listwise <- vaar_fiml_ahead(sem(m, lavaan::HolzingerSwineford1939, group = "school"))
cat("VERSIONS", paste(versions, collapse = ","), "WORST", worst, "MOVED", moved,
    "LISTWISE", length(listwise), "ORDER", vapply(1:6, function(n)
      paste(vaar_level_order(n), collapse = "-"), ""), "\n")
"""
)


def test_fiml_measures_computed_ahead_of_the_baseline_equal_lavaans():
    """A ladder level's FIML-corrected test, computed in its worker before the baseline model
    exists, gives the same fit measures as lavaan computing everything itself."""
    from vaar.sem.bridge import R_DIR

    words = rscript("-e", AHEAD, R_DIR).split()
    at = words.index
    assert words[at("VERSIONS") + 1] == ",".join(["V3"] * 3 + ["V6"] * 3)
    assert float(words[at("WORST") + 1]) < 1e-10
    assert words[at("MOVED") + 1] == "TRUE"
    assert words[at("LISTWISE") + 1] == "0"  # nothing to do without FIML
    orders = words[at("ORDER") + 1 : at("ORDER") + 7]
    assert orders == ["1", "1-2", "1-3-2", "1-4-3-2", "1-5-4-3-2", "1-6-5-4-3-2"]
