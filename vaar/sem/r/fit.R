# One lavaan fit and the plain data extracted from it. Every lavaan call of vaar lives in r/*.R
# (rpy2 cannot call lavaan's cfa()/sem() directly on lavaan 0.6-14), and every function here
# returns lists and data frames, never printed output, so Python and analysis.R read the same
# numbers. Warnings and errors are caught here and returned as data.

suppressPackageStartupMessages({
  library(lavaan)
  library(semTools)
})

# Run `expr`, collecting warnings; an error becomes list(value = NULL, error = message).
vaar_capture <- function(expr) {
  warnings <- character(0)
  error <- NA_character_
  value <- withCallingHandlers(
    tryCatch(expr, error = function(e) {
      error <<- conditionMessage(e)
      NULL
    }),
    warning = function(w) {
      warnings <<- c(warnings, conditionMessage(w))
      invokeRestart("muffleWarning")
    }
  )
  list(value = value, warnings = unique(trimws(warnings)), error = error)
}

VAAR_FIT_MEASURES <- c(
  "npar", "chisq", "df", "pvalue", "chisq.scaled", "df.scaled", "pvalue.scaled",
  "cfi", "tli", "cfi.scaled", "tli.scaled", "cfi.robust", "tli.robust",
  "rmsea", "rmsea.ci.lower", "rmsea.ci.upper", "rmsea.scaled", "rmsea.robust",
  "rmsea.ci.lower.robust", "rmsea.ci.upper.robust", "srmr", "aic", "bic"
)

# Fit measures as a named numeric vector with NA for the ones this estimator does not give.
# `fiml`: the fit's FIML-corrected test by version, from vaar_fiml_ahead (r/fiml.R), if any.
vaar_fit_measures <- function(fit, fiml = NULL) {
  out <- setNames(rep(NA_real_, length(VAAR_FIT_MEASURES)), VAAR_FIT_MEASURES)
  if (is.null(fit)) {
    return(out)
  }
  # only the measures vaar reports: lavaan skips the others (same values; under FIML its GFI
  # alone costs an expected information matrix, ~12 s a level at 38 items)
  fm <- vaar_with_fiml_once(fit, fiml, vaar_capture(fitMeasures(fit, VAAR_FIT_MEASURES))$value)
  if (!is.null(fm)) {
    have <- intersect(names(fm), VAAR_FIT_MEASURES)
    out[have] <- as.numeric(fm[have])
  } else {
    out["npar"] <- as.numeric(lavInspect(fit, "npar"))
  }
  out
}

# Parameter estimates keyed by group *label* (lavaan orders groups by first appearance).
vaar_estimates <- function(fit, level) {
  pe <- vaar_capture(parameterEstimates(fit, standardized = TRUE, rsquare = TRUE))$value
  if (is.null(pe) || nrow(pe) == 0) {
    return(NULL)
  }
  labels <- lavInspect(fit, "group.label")
  # a fit of one group has no group column, but still its label (a group of one model)
  index <- if ("group" %in% names(pe)) pe$group else rep(1L, nrow(pe))
  # defined parameters (:=) belong to no group: lavaan gives them group 0, label ""
  group <- rep("", nrow(pe))
  in_group <- index > 0
  if (length(labels) > 0) group[in_group] <- labels[index[in_group]]
  col <- function(name) if (name %in% names(pe)) as.numeric(pe[[name]]) else rep(NA_real_, nrow(pe))
  data.frame(
    level = level, group = as.character(group), lhs = pe$lhs, op = pe$op, rhs = pe$rhs,
    label = if ("label" %in% names(pe)) pe$label else "",
    est = col("est"), se = col("se"), z = col("z"), pvalue = col("pvalue"),
    ci_lower = col("ci.lower"), ci_upper = col("ci.upper"), std_all = col("std.all"),
    stringsAsFactors = FALSE
  )
}

# Post-fit problems, flagged rather than raised: non-convergence, Heywood cases, non-positive-
# definite latent covariance matrices, and the symptoms of non-identification.
vaar_flags <- function(fit, level, warnings) {
  flags <- data.frame(level = character(0), flag = character(0), detail = character(0))
  add <- function(flag, detail) {
    flags[nrow(flags) + 1, ] <<- list(level, flag, detail)
  }
  if (!isTRUE(lavInspect(fit, "converged"))) add("not_converged", "the optimizer found no solution")
  pt <- parTable(fit)
  labels <- lavInspect(fit, "group.label")
  neg <- pt[pt$op == "~~" & pt$lhs == pt$rhs & pt$est < 0, ]
  for (i in seq_len(nrow(neg))) {
    g <- if (length(labels) > 0) labels[neg$group[i]] else ""
    add("heywood", sprintf("negative variance %s ~~ %s = %.6g in group %s",
                           neg$lhs[i], neg$rhs[i], neg$est[i], g))
  }
  cov_lv <- vaar_capture(lavInspect(fit, "cov.lv"))$value
  if (!is.null(cov_lv)) {
    if (is.matrix(cov_lv)) cov_lv <- list(cov_lv)
    for (g in seq_along(cov_lv)) {
      m <- cov_lv[[g]]
      if (length(m) > 0 && min(eigen(m, symmetric = TRUE, only.values = TRUE)$values) < 0) {
        add("not_positive_definite", sprintf("latent covariance matrix in group %s",
                                             if (length(labels) > 0) labels[g] else ""))
      }
    }
  }
  # std.lv identification (the ordinal ladder) leaves a factor's sign arbitrary: a factor whose
  # loadings are mostly negative in a group has its paths' signs reversed there
  pe <- vaar_capture(parameterEstimates(fit, se = FALSE, ci = FALSE))$value
  if (!is.null(pe)) {
    loads <- pe[pe$op == "=~", ]
    if (nrow(loads) > 0) {
      if (!"group" %in% names(loads)) loads$group <- 1L
      sums <- aggregate(est ~ lhs + group, data = loads, FUN = function(x) sum(sign(x)))
      for (i in which(sums$est < 0)) {
        add("factor_sign_reversed", sprintf("most loadings of %s are negative in group %s",
                                            sums$lhs[i], if (length(labels) > 0)
                                              labels[sums$group[i]] else ""))
      }
    }
  }
  ident <- grep("not (be )?identified|could not compute standard errors|could not invert",
                warnings, ignore.case = TRUE, value = TRUE)
  for (w in ident) add("not_identified", w)
  flags
}

# Fit one model (sem() defaults, or lavaan() for complete ordinal syntax). `baseline = FALSE`
# skips lavaan's independence model: it does not depend on group.equal, so the ladder fits it
# once (configural) and attaches it to the other levels (identical fit measures, checked in
# tests/test_sem_ladder.py against plain lavaan calls). Returns the fit and messages.
vaar_fit_run <- function(syntax, data, group, level, options, group.equal = "",
                         group.partial = "", use_lavaan = FALSE, baseline = TRUE) {
  none_if_empty <- function(x) if (length(x) == 0) "" else x
  args <- c(list(model = syntax, data = data, group = group,
                 group.equal = none_if_empty(group.equal),
                 group.partial = none_if_empty(group.partial)), options)
  if (!baseline) args$baseline <- FALSE
  runner <- if (use_lavaan) "lavaan" else "sem"  # by name: lavaan deparses its call
  res <- vaar_capture(do.call(runner, args))
  messages <- data.frame(level = character(0), type = character(0), message = character(0))
  for (w in res$warnings) messages[nrow(messages) + 1, ] <- list(level, "warning", w)
  if (!is.na(res$error)) messages[nrow(messages) + 1, ] <- list(level, "error", res$error)
  list(fit = res$value, level = level, messages = messages, error = res$error,
       warnings = res$warnings)
}

# Everything vaar reports about one fit, as data. `baseline_fit` lends its independence model
# to a fit made with baseline = FALSE. `measures = FALSE` leaves out the fit measures (the
# row), which need that baseline: vaar_measure adds them once it is there.
vaar_describe <- function(run, baseline_fit = NULL, measures = TRUE) {
  fit <- run$fit
  level <- run$level
  out <- run
  if (is.null(fit)) {
    out$row <- c(list(level = level, converged = FALSE, post_check = FALSE),
                 as.list(vaar_fit_measures(NULL)))
    return(out)
  }
  out$fit <- fit <- vaar_lend_baseline(fit, baseline_fit)
  post <- vaar_capture(lavInspect(fit, "post.check"))
  for (w in setdiff(post$warnings, run$warnings)) {
    out$messages[nrow(out$messages) + 1, ] <- list(level, "warning", w)
  }
  out$post_check <- isTRUE(post$value)
  if (measures) out <- vaar_measure(out)
  out$estimates <- vaar_estimates(fit, level)
  out$flags <- vaar_flags(fit, level, c(run$warnings, post$warnings))
  stat_group <- vaar_capture(lavInspect(fit, "test")[[1]]$stat.group)$value
  labels <- lavInspect(fit, "group.label")
  if (!is.null(stat_group) && length(stat_group) == length(labels)) {
    out$group_fits <- data.frame(level = level, group = labels, chisq = as.numeric(stat_group))
  }
  # lavaan's own text, without its fit measures: fitMeasures() gave them above (row), and
  # summary(fit.measures = TRUE) would compute them again (0.13 s a level, demo-sized fit)
  out$summary <- paste(
    vaar_capture(capture.output(summary(fit, standardized = TRUE, rsquare = TRUE)))$value,
    collapse = "\n"
  )
  out
}

# A fit fitted with baseline = FALSE gets the independence model of `baseline_fit` (it does
# not depend on group.equal): identical fit measures, without fitting it again.
vaar_lend_baseline <- function(fit, baseline_fit) {
  if (!is.null(baseline_fit) && is.null(fit@baseline$test) &&
      !is.null(baseline_fit@baseline$test)) {
    fit@baseline <- baseline_fit@baseline
  }
  fit
}

# The fit-measures row of a described fit (vaar_describe): converged, post.check, fitMeasures
# (with the FIML-corrected test vaar_fiml_ahead computed for it, if any).
vaar_measure <- function(out) {
  out$row <- c(list(level = out$level, converged = isTRUE(lavInspect(out$fit, "converged")),
                    post_check = out$post_check),
               as.list(vaar_fit_measures(out$fit, out$fiml)))
  out
}

# The information matrices lavaan used for a fit's standard errors and its (scaled) test, as
# lavaan reports them: information (expected / observed / first.order), and for observed
# information how it was computed (hessian: numerical; h1: from the unrestricted model).
vaar_information <- function(fit) {
  o <- lavInspect(fit, "options")
  list(se = o$information[1], test = o$information[length(o$information)],
       observed = o$observed.information[1], h1 = o$h1.information[1])
}

# Apply `f` to each element, in forked R processes when ncpus > 1 (results are the same: each
# fit is independent of the others). Falls back to a plain loop where forking is unavailable.
vaar_map <- function(x, f, ncpus = 1L) {
  if (ncpus > 1L && length(x) > 1L && .Platform$OS.type == "unix") {
    out <- parallel::mclapply(x, f, mc.cores = min(ncpus, length(x)), mc.preschedule = FALSE)
    failed <- vapply(out, function(o) inherits(o, "try-error") || is.null(o), logical(1))
    if (any(failed)) out[failed] <- lapply(x[failed], f)  # a lost child: redo it here
    return(out)
  }
  lapply(x, f)
}

# lavaan's own parse of a model string: observed and latent variable names, or its error.
vaar_parse <- function(syntax) {
  res <- vaar_capture(lavaanify(syntax))
  if (is.null(res$value)) {
    return(list(error = res$error, ov = character(0), lv = character(0)))
  }
  list(error = NA_character_, ov = lavNames(res$value, "ov"), lv = lavNames(res$value, "lv"))
}
