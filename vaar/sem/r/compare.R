# Comparing two fitted levels: the changes in fit indices and the LRT between them
# (vaar_difference), and whether a decision rule lets the constrained level hold
# (vaar_judge). The rule comes as data, a table of criteria from vaar.invariance:
#   statistic  a field of the difference: d_cfi, d_rmsea, d_srmr, lrt_pvalue
#   label      how the reason names it
#   breach     drop (statistic <= -cut-off), rise (statistic >= cut-off), below (< cut-off)
#   cutoff     the name of its cut-off in `limits` ("srmr": the level's own SRMR cut-off)
#   need       all: every such criterion is breached; any: at least one of them (if any)

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

# `method`: lavTestLRT's scaled-difference method ("default": lavaan's choice for the estimator)
vaar_lrt <- function(fit_free, fit_constrained, method = "default") {
  res <- vaar_capture(lavTestLRT(fit_free, fit_constrained, method = method))
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

# What changed from the `free` fit to the `constrained` one: `indices` (which CFI and RMSEA,
# and the changes in them and in SRMR), `lrt`, and whether both fits converged (`usable`).
vaar_difference <- function(free, constrained) {
  a <- free$row
  b <- constrained$row
  cfi <- vaar_pick_index(a, b, "cfi")
  rmsea <- vaar_pick_index(a, b, "rmsea")
  indices <- list(from = free$level, to = constrained$level, cfi_index = cfi,
                  rmsea_index = rmsea, d_cfi = b[[cfi]] - a[[cfi]],
                  d_rmsea = b[[rmsea]] - a[[rmsea]], d_srmr = b$srmr - a$srmr)
  lrt <- if (!is.null(free$fit) && !is.null(constrained$fit)) {
    vaar_lrt(free$fit, constrained$fit)
  } else {
    vaar_lrt(NULL, NULL)
  }
  list(indices = indices, lrt = lrt, usable = isTRUE(a$converged) && isTRUE(b$converged))
}

# Does the constrained level hold under the rule's `criteria` (unrounded), and why not.
vaar_judge <- function(difference, criteria, limits) {
  values <- c(difference$indices, difference$lrt)
  stat <- vapply(criteria$statistic, function(s) as.numeric(values[[s]]), numeric(1))
  cut <- vapply(criteria$cutoff, function(k) as.numeric(limits[[k]]), numeric(1))
  breached <- vapply(seq_along(stat), function(i) {
    isTRUE(switch(criteria$breach[i], drop = stat[i] <= -cut[i], rise = stat[i] >= cut[i],
                  below = stat[i] < cut[i], stop("unknown breach ", criteria$breach[i])))
  }, logical(1))
  all_of <- criteria$need == "all"
  any_of <- criteria$need == "any"
  fails <- all(breached[all_of]) && (!any(any_of) || any(breached[any_of]))
  undecidable <- !difference$usable || anyNA(stat[all_of])
  reason <- if (!difference$usable) {
    "a model did not converge"
  } else if (undecidable) {
    "the index the rule needs is not available"
  } else if (fails) {
    vaar_reason(criteria, stat, cut)
  } else {
    "within the rule"
  }
  list(holds = !undecidable && !fails, reason = reason)
}

# The criteria a failing level met, in words: "dCFI -0.02 <= -0.01 and (dRMSEA ... or ...)".
vaar_reason <- function(criteria, stat, cut) {
  form <- c(drop = "%s %.6g <= -%g", rise = "%s %.6g >= %g", below = "%s %.6g < %g")
  shown <- sprintf(form[criteria$breach], criteria$label, stat, cut)
  any_of <- shown[criteria$need == "any"]
  if (length(any_of) > 1) any_of <- sprintf("(%s)", paste(any_of, collapse = " or "))
  paste(c(shown[criteria$need == "all"], any_of), collapse = " and ")
}

# A constrained level against the level below it: one row of the comparisons table.
vaar_compare <- function(free, constrained, criteria, limits) {
  difference <- vaar_difference(free, constrained)
  c(difference$indices, list(srmr_threshold = limits$srmr), difference$lrt,
    vaar_judge(difference, criteria, limits))
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
