# The measurement-invariance ladder: fit each level, compare adjacent levels (LRT and delta
# fit indices), decide which level holds under a stated rule, optionally search for partial
# invariance, test equal structural paths, and bootstrap the paths. Returns plain data only.

VAAR_DEFAULT_THRESHOLDS <- list(cfi = 0.010, rmsea = 0.015, srmr_loadings = 0.030,
                                srmr_other = 0.010, alpha = 0.05)

# group.equal of each level: cumulative constraints, thresholds first for ordinal data.
vaar_level_equal <- function(level, ordinal) {
  steps <- if (ordinal) {
    list(configural = character(0), thresholds = "thresholds", metric = "loadings",
         scalar = "intercepts", strict = "residuals")
  } else {
    list(configural = character(0), metric = "loadings", scalar = "intercepts",
         strict = "residuals")
  }
  if (!level %in% names(steps)) {
    stop(sprintf("unknown invariance level '%s' (known: %s)", level,
                 paste(names(steps), collapse = ", ")))
  }
  unlist(steps[seq_len(match(level, names(steps)))], use.names = FALSE)
}

# Which fit index a comparison uses: robust if lavaan gives it for both fits, else scaled, else
# the standard one. The choice is reported with every comparison.
vaar_pick_index <- function(a, b, base) {
  for (name in c(paste0(base, ".robust"), paste0(base, ".scaled"), base)) {
    if (!is.na(a[[name]]) && !is.na(b[[name]])) {
      return(name)
    }
  }
  base
}

vaar_lrt <- function(fit_free, fit_constrained) {
  res <- vaar_capture(lavTestLRT(fit_free, fit_constrained))
  out <- list(chisq_diff = NA_real_, df_diff = NA_real_, lrt_pvalue = NA_real_,
              lrt_method = NA_character_, lrt_error = res$error)
  if (!is.null(res$value)) {
    tab <- res$value
    out$chisq_diff <- as.numeric(tab[2, "Chisq diff"])
    out$df_diff <- as.numeric(tab[2, "Df diff"])
    out$lrt_pvalue <- as.numeric(tab[2, "Pr(>Chisq)"])
    heading <- trimws(strsplit(attr(tab, "heading")[1], "\n")[[1]])
    out$lrt_method <- heading[nzchar(heading)][1]
  }
  out
}

# Compare a constrained level with the level below it; `holds` applies the rule unrounded.
vaar_compare <- function(free, constrained, rule, thresholds) {
  a <- free$row
  b <- constrained$row
  cfi <- vaar_pick_index(a, b, "cfi")
  rmsea <- vaar_pick_index(a, b, "rmsea")
  d_cfi <- b[[cfi]] - a[[cfi]]
  d_rmsea <- b[[rmsea]] - a[[rmsea]]
  d_srmr <- b$srmr - a$srmr
  lrt <- if (!is.null(free$fit) && !is.null(constrained$fit)) {
    vaar_lrt(free$fit, constrained$fit)
  } else {
    vaar_lrt(NULL, NULL)
  }
  srmr_thr <- if (constrained$level %in% c("metric")) {
    thresholds$srmr_loadings
  } else {
    thresholds$srmr_other
  }
  usable <- isTRUE(a$converged) && isTRUE(b$converged)
  worse_cfi <- isTRUE(d_cfi <= -thresholds$cfi)
  fails <- switch(rule,
    chen2007 = worse_cfi && (isTRUE(d_rmsea >= thresholds$rmsea) || isTRUE(d_srmr >= srmr_thr)),
    cheung_rensvold2002 = worse_cfi,
    lrt = isTRUE(lrt$lrt_pvalue < thresholds$alpha),
    stop(sprintf("unknown decision rule '%s' (known: chen2007, cheung_rensvold2002, lrt)", rule))
  )
  undecidable <- !usable || (rule == "lrt" && is.na(lrt$lrt_pvalue)) ||
    (rule != "lrt" && is.na(d_cfi))
  reason <- if (!usable) {
    "a model did not converge"
  } else if (undecidable) {
    "the index the rule needs is not available"
  } else if (fails) {
    switch(rule,
      chen2007 = sprintf("dCFI %.6g <= -%g and (dRMSEA %.6g >= %g or dSRMR %.6g >= %g)",
                         d_cfi, thresholds$cfi, d_rmsea, thresholds$rmsea, d_srmr, srmr_thr),
      cheung_rensvold2002 = sprintf("dCFI %.6g <= -%g", d_cfi, thresholds$cfi),
      lrt = sprintf("LRT p %.6g < %g", lrt$lrt_pvalue, thresholds$alpha)
    )
  } else {
    "within the rule"
  }
  c(list(from = free$level, to = constrained$level, cfi_index = cfi, rmsea_index = rmsea,
         d_cfi = d_cfi, d_rmsea = d_rmsea, d_srmr = d_srmr, srmr_threshold = srmr_thr),
    lrt, list(holds = usable && !undecidable && !fails, reason = reason))
}

# The parameter type each level constrains: only those are candidates for freeing there.
VAAR_LEVEL_OPS <- c(thresholds = "|", metric = "=~", scalar = "~1", strict = "~~")

# Score tests on the equality constraints of a fit, mapped to lavaan's group.partial syntax,
# restricted to the parameter type `op` that the failing level added.
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

vaar_bind <- function(frames) {
  frames <- Filter(function(x) !is.null(x) && nrow(x) > 0, frames)
  if (length(frames) == 0) {
    return(NULL)
  }
  do.call(rbind, frames)
}

# Bootstrap the structural paths of one level (lavaan's own bootstrap, percentile CIs).
vaar_bootstrap_paths <- function(fitter, level, equal, partial, draws, ncpus, seed,
                                 base_estimator) {
  # lavaan bootstraps ML-family and DWLS fits only: MLR -> ML (same point estimates),
  # WLSMV -> DWLS (same point estimates); robust corrections are replaced by the bootstrap.
  estimator <- if (base_estimator %in% c("MLR", "MLM", "MLMV", "MLF")) "ML" else
    if (base_estimator %in% c("WLSMV", "WLSM")) "DWLS" else base_estimator
  one <- fitter(paste0(level, "_bootstrap"), equal, partial,
                list(estimator = estimator, se = "bootstrap", bootstrap = draws, parallel = "multicore",
                     ncpus = ncpus, iseed = seed))
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
    estimator = estimator, est = pe$est, boot_se = pe$se, boot_ci_lower = pe$ci.lower, boot_ci_upper = pe$ci.upper,
    draws = draws, failed = failed, nonadmissible = nonadmissible,
    successful = if (is.null(boot)) 0L else sum(stats::complete.cases(boot)), stringsAsFactors = FALSE
  )
  list(table = table, messages = one$messages)
}

# The whole analysis. `ordered` empty = continuous (ML/MLR with FIML); non-empty = WLSMV with
# the theta parameterization and pairwise deletion, syntax from semTools::measEq.syntax.
vaar_fit_ladder <- function(data, syntax, group, estimator = "MLR", ordered = character(0),
                            levels = c("configural", "metric", "scalar", "strict"),
                            rule = "chen2007", thresholds = list(), partial = FALSE,
                            max_free = 10L, equal_paths = TRUE, bootstrap = 0L, ncpus = 2L,
                            seed = 1L, missing = "fiml") {
  if (!missing %in% c("fiml", "listwise")) {
    stop(sprintf("unknown missing-data method '%s' (known: fiml, listwise)", missing))
  }
  thresholds <- modifyList(VAAR_DEFAULT_THRESHOLDS, as.list(thresholds))
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
    fiml <- missing == "fiml" && anyNA(data)
    options <- list(estimator = estimator, missing = if (fiml) "ml" else "listwise")
  }
  if (!"configural" %in% levels) levels <- c("configural", levels)
  levels <- levels[order(match(levels, c("configural", "thresholds", "metric", "scalar",
                                         "strict")))]
  run <- function(level, equal, partial_spec, extra = list(), baseline = FALSE) {
    if (ordinal) {
      model <- vaar_capture(vaar_ordinal_syntax(syntax, data, group, ordered,
                                                setdiff(equal, "regressions"), partial_spec))
      if (is.null(model$value)) {
        messages <- data.frame(level = level, type = "error", message = model$error)
        return(list(fit = NULL, level = level, messages = messages, error = model$error,
                    warnings = character(0)))
      }
      vaar_fit_run(model$value, data, group, level, modifyList(options, extra),
                   group.equal = intersect(equal, "regressions"), use_lavaan = TRUE,
                   baseline = baseline)
    } else {
      vaar_fit_run(syntax, data, group, level, modifyList(options, extra), group.equal = equal,
                   group.partial = partial_spec, baseline = baseline)
    }
  }
  # The levels are independent fits: fit them side by side, then compare in order.
  runs <- vaar_map(levels, function(lv) {
    run(lv, vaar_level_equal(lv, ordinal), character(0), baseline = lv == "configural")
  }, ncpus)
  names(runs) <- levels
  baseline_fit <- runs$configural$fit
  prefitted <- lapply(runs, vaar_describe, baseline_fit = baseline_fit)
  fitter <- function(level, equal, partial_spec, extra = list()) {
    vaar_describe(run(level, equal, partial_spec, extra), baseline_fit)
  }

  results <- list()
  comparisons <- list()
  partial_steps <- list()
  freed <- character(0)
  base <- prefitted$configural
  results[["configural"]] <- base
  highest <- if (isTRUE(base$row$converged)) "configural" else NA_character_
  highest_equal <- character(0)
  still_holding <- !is.na(highest)
  prev <- base  # comparisons are always between adjacent levels
  for (level in setdiff(levels, "configural")) {
    equal <- vaar_level_equal(level, ordinal)
    # once a partial level was accepted, the levels above it keep its freed parameters
    cur <- if (length(freed) == 0) {
      prefitted[[level]]
    } else {
      fitter(paste0(level, "_partial"), equal, freed)
    }
    results[[cur$level]] <- cur
    cmp <- vaar_compare(prev, cur, rule, thresholds)
    comparisons[[length(comparisons) + 1]] <- cmp
    prev <- cur
    if (still_holding && cmp$holds) {
      highest <- cur$level
      highest_equal <- equal
      base <- cur
      next
    }
    if (still_holding && partial && !is.null(cur$fit)) {
      trial <- cur
      name <- paste0(level, "_partial")
      freed_before <- freed
      found <- FALSE
      # Wu & Estabrook (2016) ordinal scalar models fix intercepts rather than equate them:
      # the score tests see the thresholds, whose release frees that item's location
      ops <- if (ordinal && level == "scalar") c("~1", "|") else VAAR_LEVEL_OPS[[level]]
      for (step in seq_len(max_free)) {
        cand <- vaar_score_candidates(trial$fit, ops)
        if (is.null(cand)) break
        cand <- cand[!cand$parameter %in% freed, ]
        if (nrow(cand) == 0) break
        freed <- c(freed, cand$parameter[1])
        trial <- fitter(name, equal, freed)
        pcmp <- vaar_compare(base, trial, rule, thresholds)
        partial_steps[[length(partial_steps) + 1]] <- data.frame(
          level = level, step = step, freed = cand$parameter[1], X2 = cand$X2[1],
          df = cand$df[1], pvalue = cand$pvalue[1], holds = pcmp$holds,
          stringsAsFactors = FALSE
        )
        if (pcmp$holds || is.null(trial$fit)) {
          found <- pcmp$holds
          break
        }
      }
      if (found) {
        results[[name]] <- trial
        comparisons[[length(comparisons) + 1]] <- pcmp
        highest <- name
        highest_equal <- equal
        base <- trial
        prev <- trial
        next
      }
      freed <- freed_before
    }
    still_holding <- FALSE
  }

  equal_paths_row <- NULL
  top <- if (is.na(highest)) NULL else results[[highest]]
  has_paths <- !is.null(top$estimates) && any(top$estimates$op == "~")
  n_groups <- if (is.null(top$fit)) 0 else lavInspect(top$fit, "ngroups")
  if (equal_paths && has_paths && n_groups > 1) {
    eq <- fitter("equal_paths", c(highest_equal, "regressions"), freed)
    results[["equal_paths"]] <- eq
    cmp <- vaar_compare(top, eq, "lrt", thresholds)
    equal_paths_row <- as.data.frame(cmp[c("from", "to", "chisq_diff", "df_diff", "lrt_pvalue",
                                           "lrt_method", "d_cfi", "d_rmsea", "d_srmr")])
    verdict <- vaar_paths_equal(cmp$lrt_pvalue, thresholds$alpha)
    equal_paths_row$paths_equal <- verdict$paths_equal
    equal_paths_row$verdict <- verdict$verdict
  }

  boot <- NULL
  boot_messages <- NULL
  if (bootstrap > 0 && has_paths) {
    targets <- unique(c("configural", highest))
    for (lv in targets) {
      eqs <- if (lv == "configural") character(0) else highest_equal
      b <- vaar_bootstrap_paths(fitter, lv, eqs, if (lv == "configural") character(0) else freed,
                                as.integer(bootstrap), as.integer(ncpus), as.integer(seed),
                                estimator)
      boot <- vaar_bind(list(boot, b$table))
      boot_messages <- vaar_bind(list(boot_messages, b$messages))
    }
  }

  fits <- do.call(rbind, lapply(results, function(r) as.data.frame(r$row)))
  rownames(fits) <- NULL
  summaries <- vapply(results, function(r) if (is.null(r$summary)) "" else r$summary, "")
  list(
    fits = fits,
    estimates = vaar_bind(lapply(results, `[[`, "estimates")),
    group_fits = vaar_bind(lapply(results, `[[`, "group_fits")),
    comparisons = vaar_bind(lapply(comparisons, as.data.frame)),
    partial = vaar_bind(partial_steps),
    equal_paths = equal_paths_row,
    bootstrap = boot,
    messages = vaar_bind(c(lapply(results, `[[`, "messages"), list(boot_messages))),
    flags = vaar_bind(lapply(results, `[[`, "flags")),
    summaries = summaries,
    decision = list(highest = highest, rule = rule, thresholds = thresholds,
                    freed = freed, levels_tested = levels),
    group_labels = if (is.null(results$configural$fit)) character(0) else
      lavInspect(results$configural$fit, "group.label"),
    options = options[setdiff(names(options), "ordered")],
    versions = c(R = R.version.string, lavaan = as.character(packageVersion("lavaan")),
                 semTools = as.character(packageVersion("semTools")))
  )
}

# The equal-paths LRT's verdict: equal when p >= alpha; undecided (NA) when the LRT gave no
# p-value (a failed fit, or a scaled difference lavaan could not compute), never "differ".
vaar_paths_equal <- function(pvalue, alpha) {
  if (length(pvalue) != 1 || is.na(pvalue)) {
    return(list(paths_equal = NA, verdict = "undecided: the LRT gave no p-value"))
  }
  equal <- pvalue >= alpha
  list(paths_equal = equal,
       verdict = if (equal) "equal across models" else "differ between models")
}
