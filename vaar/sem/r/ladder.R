# The measurement-invariance ladder: fit each level, compare each with the level below it
# (r/compare.R), decide the highest level that holds under a rule, optionally search for
# partial invariance, test equal structural paths, and bootstrap the paths. Plain data only.
#
# What the levels are comes as data, the `ladder` table of vaar.invariance (one row per
# fit, in order; lists joined by commas):
#   level    the level's name             partial  the name of its partial variant
#   equal    its cumulative group.equal   frees    the operators a partial search may free
#   srmr     the name of its SRMR cut-off kind     "level", or "paths" (the equal-paths test,
#                                                  whose group.equal is added to the highest
#                                                  level that holds)
# and the rule as its `criteria` (r/compare.R): nothing here knows a level or a rule by name.

# The analysis every fit shares: the data (ordinal variables as ordered factors), the model,
# the group and lavaan's options. `ordered` empty = continuous (ML/MLR with FIML); non-empty =
# WLSMV with the theta parameterization and pairwise deletion, syntax from semTools.
# `fiml_options`: lavaan options ("name=value") for FIML fits only (vaar.invariance's
# FIML_INFORMATION: which information matrix the SEs and scaled tests use).
vaar_setup <- function(data, syntax, group, estimator, ordered, missing,
                       fiml_options = character(0)) {
  ordinal <- length(ordered) > 0
  if (ordinal) {
    for (v in ordered) data[[v]] <- ordered(data[[v]])
    options <- list(estimator = estimator, ordered = ordered, parameterization = "theta",
                    missing = "pairwise")
  } else {
    # FIML when anything is missing (unless the caller asks for listwise deletion, which is
    # much faster on wide instruments); with complete data "listwise" is lavaan's default and
    # gives the same estimates (FIML there would change lavaan's information-matrix defaults
    # and so the robust SEs slightly).
    method <- c(fiml = "ml", listwise = "listwise")[[missing]]
    options <- list(estimator = estimator, missing = if (anyNA(data)) method else "listwise")
    if (options$missing == "ml") {
      for (p in strsplit(fiml_options, "=", fixed = TRUE)) options[[p[1]]] <- p[2]
    }
  }
  list(data = data, syntax = syntax, group = group, ordered = ordered, ordinal = ordinal,
       options = options, baseline_fit = NULL)
}

# One fit: `equal` its group.equal, `partial` its group.partial, `extra` options on top of the
# shared ones (the bootstrap's). Ordinal models get their syntax from r/ordinal.R.
vaar_fit_level <- function(setup, level, equal, partial = character(0), extra = list(),
                           baseline = FALSE) {
  options <- modifyList(setup$options, extra)
  if (!setup$ordinal) {
    return(vaar_fit_run(setup$syntax, setup$data, setup$group, level, options,
                        group.equal = equal, group.partial = partial, baseline = baseline))
  }
  # measEq.syntax knows the measurement constraints; equal regressions are lavaan's
  model <- vaar_capture(vaar_ordinal_syntax(setup$syntax, setup$data, setup$group,
                                            setup$ordered, setdiff(equal, "regressions"),
                                            partial))
  if (is.null(model$value)) {
    messages <- data.frame(level = level, type = "error", message = model$error)
    return(list(fit = NULL, level = level, messages = messages, error = model$error,
                warnings = character(0)))
  }
  vaar_fit_run(model$value, setup$data, setup$group, level, options,
               group.equal = intersect(equal, "regressions"), use_lavaan = TRUE,
               baseline = baseline)
}

# A fit made after the ladder's levels, described like them (with the baseline model the
# first level's fit lends it).
vaar_refit <- function(setup, level, equal, partial = character(0), extra = list()) {
  vaar_describe(vaar_fit_level(setup, level, equal, partial, extra), setup$baseline_fit)
}

# The ladder's levels are independent fits: fit and describe them side by side, each in its
# own forked worker (the parent does no R work per level). The first (configural) fits
# lavaan's baseline model and lends it to the others, which skip it (a fifth of a fit); their
# fit measures, which need it, follow side by side once it is there. Under FIML the costly part
# of those measures does not need it and is done in each level's own worker (vaar_fiml_ahead).
# The longest fits start first (vaar_level_order), so that no core is left with one at the end.
vaar_fit_levels <- function(setup, steps, ncpus) {
  order <- vaar_level_order(nrow(steps))
  runs <- vaar_map(order, function(i) {
    first <- i == 1
    run <- vaar_fit_level(setup, steps$level[i], vaar_split(steps$equal[i]), baseline = first)
    out <- vaar_describe(run, measures = first)
    if (!first) out$fiml <- vaar_fiml_ahead(out$fit)
    out
  }, ncpus)
  runs[order] <- runs
  names(runs) <- steps$level
  waiting <- which(vapply(runs, function(r) is.null(r$row), logical(1)))
  for (i in waiting) runs[[i]]$fit <- vaar_lend_baseline(runs[[i]]$fit, runs[[1]]$fit)
  rows <- vaar_map(waiting, function(i) vaar_measure(runs[[i]])$row, ncpus)
  for (k in seq_along(waiting)) runs[[waiting[k]]]$row <- rows[[k]]
  runs
}

# The order in which the ladder's n levels start: the first (it also fits the baseline model
# and its fit measures) and the last (the most equality constraints, which slow lavaan's every
# iteration: a strict FIML fit takes ~1.8x a metric one at 38 items), then the others from the
# most constrained down. Results do not depend on it; vaar_fit_levels puts them back in order.
vaar_level_order <- function(n) {
  unique(c(1L, n, rev(seq_len(n))))[seq_len(n)]
}

# The cut-offs that judge one step: the thresholds, and "srmr" = the step's own SRMR cut-off.
vaar_limits <- function(thresholds, step) {
  c(thresholds, list(srmr = thresholds[[step$srmr]]))
}

# Walk up the ladder from its first level while the levels hold; a failing level may be
# rescued by a partial search. Comparisons are always between adjacent levels; the levels
# above an accepted partial level keep its freed parameters. `freed`: parameters free from
# the start (a refit of a partial level: every constrained level is then its partial variant).
vaar_walk <- function(setup, steps, fitted, criteria, thresholds, partial, max_free,
                      freed = character(0)) {
  base <- fitted[[1]]
  walk <- list(results = setNames(list(base), base$level), comparisons = list(),
               partial_steps = list(), freed = freed,
               highest = if (isTRUE(base$row$converged)) base$level else NA_character_,
               equal = character(0))
  holding <- !is.na(walk$highest)
  prev <- base
  for (i in seq_len(nrow(steps))[-1]) {
    step <- steps[i, ]
    equal <- vaar_split(step$equal)
    limits <- vaar_limits(thresholds, step)
    cur <- if (length(walk$freed) == 0) {
      fitted[[step$level]]
    } else {
      vaar_refit(setup, step$partial, equal, walk$freed)
    }
    walk$results[[cur$level]] <- cur
    cmp <- vaar_compare(prev, cur, criteria, limits)
    walk$comparisons[[length(walk$comparisons) + 1]] <- cmp
    prev <- cur
    if (holding && cmp$holds) {
      walk$highest <- cur$level
      walk$equal <- equal
      base <- cur
      next
    }
    if (holding && partial && !is.null(cur$fit)) {
      search <- vaar_search_partial(setup, step, cur, base, walk$freed, criteria, limits,
                                    max_free)
      walk$partial_steps <- c(walk$partial_steps, search$steps)
      if (search$found) {
        walk$results[[step$partial]] <- search$fit
        walk$comparisons[[length(walk$comparisons) + 1]] <- search$comparison
        walk$highest <- step$partial
        walk$equal <- equal
        walk$freed <- search$freed
        base <- search$fit
        prev <- search$fit
        next
      }
    }
    holding <- FALSE
  }
  walk
}

# Score tests on the equality constraints of a fit, mapped to lavaan's group.partial syntax,
# restricted to the parameter types `op` the failing level may free.
vaar_score_candidates <- function(fit, op) {
  res <- vaar_capture(lavTestScore(fit, epc = FALSE))
  if (is.null(res$value)) {
    return(NULL)
  }
  uni <- res$value$uni
  pt <- parTable(fit)
  rows <- lapply(uni$lhs, function(plabel) {
    row <- pt[pt$plabel == plabel, ]
    if (nrow(row) == 0) row <- pt[pt$label == plabel, ]
    row[1, ]
  })
  spec <- vapply(rows, function(row) {
    if (is.na(row$lhs)) NA_character_ else if (row$op == "~1") paste0(row$lhs, "~1") else
      paste0(row$lhs, row$op, row$rhs)
  }, character(1))
  kind <- vapply(rows, function(row) if (is.na(row$lhs)) NA_character_ else row$op, "")
  out <- data.frame(parameter = spec, X2 = as.numeric(uni$X2), df = as.numeric(uni$df),
                    pvalue = as.numeric(uni$p.value), stringsAsFactors = FALSE)
  out <- out[!is.na(out$parameter) & kind %in% op, ]
  out <- out[order(-out$X2), ]
  # one row per parameter (a parameter constrained across k groups has k-1 tests)
  out[!duplicated(out$parameter), ]
}

# Partial invariance for a failing step: free its constraints one at a time, largest score
# test first, until it holds against `base` (the last level that held), a refit fails, or
# `max_free` are freed. Returns found, the steps taken, and when found the fit, its
# comparison and every freed parameter.
vaar_search_partial <- function(setup, step, failed, base, freed, criteria, limits,
                                max_free) {
  frees <- vaar_split(step$frees)
  trial <- failed
  steps <- list()
  for (k in seq_len(max_free)) {
    cand <- vaar_score_candidates(trial$fit, frees)
    if (is.null(cand)) break
    cand <- cand[!cand$parameter %in% freed, ]
    if (nrow(cand) == 0) break
    freed <- c(freed, cand$parameter[1])
    trial <- vaar_refit(setup, step$partial, vaar_split(step$equal), freed)
    cmp <- vaar_compare(base, trial, criteria, limits)
    steps[[k]] <- data.frame(level = step$level, step = k, freed = cand$parameter[1],
                             X2 = cand$X2[1], df = cand$df[1], pvalue = cand$pvalue[1],
                             holds = cmp$holds, stringsAsFactors = FALSE)
    if (cmp$holds || is.null(trial$fit)) {
      return(list(found = cmp$holds, steps = steps, fit = trial, comparison = cmp,
                  freed = freed))
    }
  }
  list(found = FALSE, steps = steps)
}

# Are the structural paths equal across groups: the LRT of the `paths` row's constraints on
# top of the `top` level that holds (its freed parameters stay free), with its verdict.
vaar_test_equal_paths <- function(setup, paths, top, equal, freed, alpha) {
  fit <- vaar_refit(setup, paths$level, c(equal, vaar_split(paths$equal)), freed)
  difference <- vaar_difference(top, fit)
  row <- as.data.frame(c(difference$indices, difference$lrt)[
    c("from", "to", "chisq_diff", "df_diff", "lrt_pvalue", "lrt_method", "d_cfi", "d_rmsea",
      "d_srmr")])
  verdict <- vaar_paths_equal(row$lrt_pvalue, alpha)
  row$paths_equal <- verdict$paths_equal
  row$verdict <- verdict$verdict
  list(fit = fit, row = row)
}

# Bootstrap the structural paths of one level (lavaan's own bootstrap, percentile CIs).
vaar_bootstrap_paths <- function(setup, level, equal, partial, draws, ncpus, seed) {
  # lavaan bootstraps ML-family and DWLS fits only: MLR -> ML (same point estimates),
  # WLSMV -> DWLS (same point estimates); robust corrections are replaced by the bootstrap.
  base_estimator <- setup$options$estimator
  estimator <- if (base_estimator %in% c("MLR", "MLM", "MLMV", "MLF")) "ML" else
    if (base_estimator %in% c("WLSMV", "WLSM")) "DWLS" else base_estimator
  one <- vaar_refit(setup, paste0(level, "_bootstrap"), equal, partial,
                    list(estimator = estimator, se = "bootstrap", bootstrap = draws,
                         parallel = "multicore", ncpus = ncpus, iseed = seed))
  if (is.null(one$fit)) {
    return(list(table = NULL, messages = one$messages))
  }
  boot <- vaar_capture(lavInspect(one$fit, "boot"))$value
  failed <- length(attr(boot, "error.idx"))
  nonadmissible <- length(attr(boot, "nonadmissible"))
  pe <- vaar_capture(parameterEstimates(one$fit, boot.ci.type = "perc"))$value
  pe <- pe[pe$op == "~", ]
  labels <- lavInspect(one$fit, "group.label")
  table <- data.frame(
    level = level, group = labels[pe$group], lhs = pe$lhs, op = pe$op, rhs = pe$rhs,
    estimator = estimator, est = pe$est, boot_se = pe$se, boot_ci_lower = pe$ci.lower,
    boot_ci_upper = pe$ci.upper, draws = draws, failed = failed,
    nonadmissible = nonadmissible,
    successful = if (is.null(boot)) 0L else sum(stats::complete.cases(boot)),
    stringsAsFactors = FALSE
  )
  list(table = table, messages = one$messages)
}

# The bootstrap of the first level and of the highest that holds (with its constraints).
vaar_bootstrap_levels <- function(setup, first, walk, draws, ncpus, seed) {
  out <- list(table = NULL, messages = NULL)
  for (lv in unique(c(first, walk$highest))) {
    top <- lv != first
    b <- vaar_bootstrap_paths(setup, lv, if (top) walk$equal else character(0),
                              if (top) walk$freed else character(0), draws, ncpus, seed)
    out$table <- vaar_bind(list(out$table, b$table))
    out$messages <- vaar_bind(list(out$messages, b$messages))
  }
  out
}

vaar_bind <- function(frames) {
  frames <- Filter(function(x) !is.null(x) && nrow(x) > 0, frames)
  if (length(frames) == 0) {
    return(NULL)
  }
  do.call(rbind, frames)
}

# Everything the fits of one analysis produced, as plain tables and lists.
vaar_ladder_result <- function(setup, steps, walk, rule, thresholds, equal_paths, boot) {
  results <- walk$results
  fits <- do.call(rbind, lapply(results, function(r) as.data.frame(r$row)))
  rownames(fits) <- NULL
  first <- results[[1]]$fit
  list(
    fits = fits,
    estimates = vaar_bind(lapply(results, `[[`, "estimates")),
    group_fits = vaar_bind(lapply(results, `[[`, "group_fits")),
    comparisons = vaar_bind(lapply(walk$comparisons, as.data.frame)),
    partial = vaar_bind(walk$partial_steps),
    equal_paths = equal_paths,
    bootstrap = boot$table,
    messages = vaar_bind(c(lapply(results, `[[`, "messages"), list(boot$messages))),
    flags = vaar_bind(lapply(results, `[[`, "flags")),
    summaries = vapply(results, function(r) if (is.null(r$summary)) "" else r$summary, ""),
    decision = list(highest = walk$highest, rule = rule, thresholds = thresholds,
                    freed = walk$freed, levels_tested = steps$level),
    group_labels = if (is.null(first)) character(0) else lavInspect(first, "group.label"),
    options = setup$options[setdiff(names(setup$options), "ordered")],
    information = if (is.null(first)) NULL else vaar_information(first),
    versions = c(R = R.version.string, lavaan = as.character(packageVersion("lavaan")),
                 semTools = as.character(packageVersion("semTools")))
  )
}

# The whole analysis: `ladder` and `criteria` as described above, `rule` the rule's name (for
# the record), `thresholds` every cut-off by name, `freed` group.partial parameters free from
# the start (vaar_walk).
vaar_fit_ladder <- function(data, syntax, group, ladder, criteria, rule, thresholds,
                            estimator, ordered, partial, max_free, bootstrap, ncpus, seed,
                            missing, freed = character(0), fiml_options = character(0)) {
  setup <- vaar_setup(data, syntax, group, estimator, ordered, missing, fiml_options)
  steps <- ladder[ladder$kind == "level", ]
  fitted <- vaar_fit_levels(setup, steps, ncpus)
  setup$baseline_fit <- fitted[[1]]$fit
  walk <- vaar_walk(setup, steps, fitted, criteria, thresholds, partial, max_free, freed)

  top <- if (is.na(walk$highest)) NULL else walk$results[[walk$highest]]
  has_paths <- !is.null(top$estimates) && any(top$estimates$op == "~")
  n_groups <- if (is.null(top$fit)) 0 else lavInspect(top$fit, "ngroups")
  paths <- ladder[ladder$kind == "paths", ]
  equal_paths <- NULL
  if (nrow(paths) == 1 && has_paths && n_groups > 1) {
    test <- vaar_test_equal_paths(setup, paths, top, walk$equal, walk$freed, thresholds$alpha)
    walk$results[[paths$level]] <- test$fit
    equal_paths <- test$row
  }
  boot <- list(table = NULL, messages = NULL)
  if (bootstrap > 0 && has_paths) {
    boot <- vaar_bootstrap_levels(setup, steps$level[1], walk, as.integer(bootstrap),
                                  as.integer(ncpus), as.integer(seed))
  }
  vaar_ladder_result(setup, steps, walk, rule, thresholds, equal_paths, boot)
}
