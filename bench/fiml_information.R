# lavaan 0.6-14's information options for FIML (missing = "ml") with MLR, timed on one
# configural fit of demo-like data (4 groups x 200, 3 % of answers missing completely at
# random, 1-5 answers), with each option's chisq.scaled and first SEs to show what changes.
#     Rscript bench/fiml_information.R listwise default h1 expected [--items 10,16,12]
# default 4,4,4 items; 10,16,12 is the demo's 38 items (many minutes for lavaan's default).
suppressPackageStartupMessages(library(lavaan))
set.seed(1)
G <- 4; N <- 200
args <- commandArgs(TRUE)
at <- match("--items", args)
nf <- if (is.na(at)) c(4, 4, 4) else as.integer(strsplit(args[at + 1], ",")[[1]])
items <- unlist(lapply(seq_along(nf), function(f) paste0("f", f, "_", seq_len(nf[f]))))
make <- function(g) {
  eta <- MASS::mvrnorm(N, rep(0, 3), matrix(c(1, .3, -.3, .3, 1, -.2, -.3, -.2, 1), 3))
  x <- do.call(cbind, lapply(seq_along(nf), function(f) sapply(seq_len(nf[f]), function(i) 3 + .7 * eta[, f] + rnorm(N, 0, sqrt(.51)))))
  x <- round(pmin(pmax(x, 1), 5))
  x[matrix(runif(length(x)) < 0.03, nrow(x))] <- NA
  d <- as.data.frame(x); names(d) <- items; d$group <- paste0("g", g); d
}
dat <- do.call(rbind, lapply(seq_len(G), make))
model <- paste(sapply(seq_along(nf), function(f) paste0("F", f, " =~ ", paste(items[startsWith(items, paste0("f", f, "_"))], collapse = " + "))), collapse = "\n")
run <- function(label, ...) {
  t <- system.time(fit <- cfa(model, dat, group = "group", estimator = "MLR", ...))
  cat(sprintf("%-40s %7.2f s  chisq.scaled %.4f  se[1..3] %s  info=%s obs=%s h1=%s\n", label, t[["elapsed"]],
    fitMeasures(fit, "chisq.scaled"), paste(sprintf("%.5f", parameterEstimates(fit)$se[2:4]), collapse = " "),
    lavInspect(fit, "options")$information[1], lavInspect(fit, "options")$observed.information[1],
    lavInspect(fit, "options")$h1.information[1]))
  flush.console()
}

if ("listwise" %in% args) run("listwise", missing = "listwise")
if ("default" %in% args) run("fiml lavaan default", missing = "ml")
if ("h1" %in% args) run("fiml observed h1 (structured)", missing = "ml", observed.information = "h1")
if ("expected" %in% args) run("fiml expected", missing = "ml", information = "expected")
if ("h1unstr" %in% args) run("fiml observed h1, h1 unstructured", missing = "ml", observed.information = "h1", h1.information = "unstructured")
