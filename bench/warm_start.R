# Warm starts for the ladder (issue 15), measured and rejected: each constrained level fitted
# cold (lavaan's default start values) and warm (start = the previous level's fit), on
# demo-like data (4 groups x 200, 4 + 4 + 4 Likert items, MLR), complete (listwise) and with
# 3 % missing (FIML, information = "observed", observed.information = "h1"). Prints the
# optimizer's time and iterations both ways and how far the warm results are from the cold:
#     Rscript bench/warm_start.R
suppressPackageStartupMessages(library(lavaan))
set.seed(1)
G <- 4; N <- 200; nf <- c(4, 4, 4)
items <- unlist(lapply(seq_along(nf), function(f) paste0("f", f, "_", seq_len(nf[f]))))
make <- function(g, share) {
  eta <- MASS::mvrnorm(N, rep(0, 3), matrix(c(1, .3, -.3, .3, 1, -.2, -.3, -.2, 1), 3))
  x <- do.call(cbind, lapply(seq_along(nf), function(f) sapply(seq_len(nf[f]), function(i)
    3 + .7 * eta[, f] + rnorm(N, 0, sqrt(.51)))))
  x <- round(pmin(pmax(x, 1), 5))
  x[matrix(runif(length(x)) < share, nrow(x))] <- NA
  d <- as.data.frame(x); names(d) <- items; d$group <- paste0("g", g); d
}
model <- paste(c(sapply(seq_along(nf), function(f) paste0("F", f, " =~ ", paste(
  items[startsWith(items, paste0("f", f, "_"))], collapse = " + "))), "F3 ~ F1 + F2"),
  collapse = "\n")
eqs <- list(configural = "", metric = "loadings", scalar = c("loadings", "intercepts"),
            strict = c("loadings", "intercepts", "residuals"))
measures <- c("chisq", "chisq.scaled", "cfi.robust", "rmsea.robust", "srmr")
fit <- function(d, eq, opts, ...) {
  do.call("sem", c(list(model, d, group = "group", estimator = "MLR", group.equal = eq,
                        baseline = FALSE), opts, list(...)))
}
cat(sprintf("%-9s %-8s %9s %9s %6s %6s %11s %11s %11s\n", "data", "level", "optim cold",
            "warm", "iter c", "iter w", "max|d est|", "max|d se|", "max|d fit|"))
for (share in c(0, 0.03)) {
  d <- do.call(rbind, lapply(seq_len(G), make, share = share))
  opts <- if (share > 0) list(missing = "ml", information = "observed",
                              observed.information = "h1") else list(missing = "listwise")
  prev <- NULL
  for (lv in names(eqs)) {
    cold <- fit(d, eqs[[lv]], opts)
    if (!is.null(prev)) {
      warm <- fit(d, eqs[[lv]], opts, start = prev)
      pc <- parameterEstimates(cold); pw <- parameterEstimates(warm)
      cat(sprintf("%-9s %-8s %9.2fs %8.2fs %6d %6d %11.2e %11.2e %11.2e\n",
                  if (share > 0) "FIML" else "listwise", lv, cold@timing$optim,
                  warm@timing$optim, lavInspect(cold, "iterations"),
                  lavInspect(warm, "iterations"), max(abs(pc$est - pw$est)),
                  max(abs(pc$se - pw$se), na.rm = TRUE),
                  max(abs(fitMeasures(cold, measures) - fitMeasures(warm, measures)))))
    }
    prev <- cold
  }
}
