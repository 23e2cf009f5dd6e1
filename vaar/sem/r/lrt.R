# Likelihood-ratio tests of one level's model against restricted versions of it (vaar's
# identification-invariant sign evidence, vaar.alignment.lrt). `models` are lavaan model texts,
# all generated and checked by vaar (vaar.sem.lrt, the allow-list of vaar.sem.grammar): the
# first is the level's model as fitted, each other one the same model with one parameter fixed
# (a per-group modifier vector such as c(NA, 0, NA)*x). Every model is fitted with the level's
# `equal` (group.equal) and `partial` (group.partial), and lavTestLRT compares the first with
# each of the others by `method`. Plain data only, one row per restricted model.

vaar_lrt_refits <- function(data, models, group, estimator, ordered, missing, level, equal,
                            partial, method) {
  setup <- vaar_setup(data, models[1], group, estimator, ordered, missing)
  if (!setup$ordinal) {
    # the scaled difference of a robust estimator is computed at M0's estimates in M1's
    # parameterization (Satorra & Bentler 2010); there the observed information is not
    # invariant to the factors' identification, the expected information is
    setup$options$information <- "expected"
  }
  free <- vaar_fit_level(setup, level, equal, partial)
  free_ok <- !is.null(free$fit) && isTRUE(lavInspect(free$fit, "converged"))
  rows <- lapply(seq_along(models)[-1], function(i) {
    out <- list(model = i - 1L, chisq_diff = NA_real_, df_diff = NA_real_,
                lrt_pvalue = NA_real_, lrt_method = NA_character_, error = NA_character_)
    if (!free_ok) {
      out$error <- vaar_lrt_failure("unrestricted", free)
      return(out)
    }
    restricted <- setup
    restricted$syntax <- models[i]
    run <- vaar_fit_level(restricted, level, equal, partial)
    if (is.null(run$fit) || !isTRUE(lavInspect(run$fit, "converged"))) {
      out$error <- vaar_lrt_failure("restricted", run)
      return(out)
    }
    lrt <- vaar_lrt(free$fit, run$fit, method)
    out[c("chisq_diff", "df_diff", "lrt_pvalue", "lrt_method")] <-
      lrt[c("chisq_diff", "df_diff", "lrt_pvalue", "lrt_method")]
    if (!is.na(lrt$lrt_error)) out$error <- paste("lavTestLRT:", lrt$lrt_error)
    out
  })
  list(
    tests = do.call(rbind, lapply(rows, as.data.frame, stringsAsFactors = FALSE)),
    groups = if (free_ok) lavInspect(free$fit, "group.label") else character(0)
  )
}

# Why a refit gives no test, in words: lavaan's error, or that it did not converge.
vaar_lrt_failure <- function(which, run) {
  if (is.null(run$fit)) {
    sprintf("the %s model could not be fitted: %s", which, trimws(run$error))
  } else {
    sprintf("the %s model did not converge (the optimizer found no solution)", which)
  }
}
