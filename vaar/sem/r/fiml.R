# FIML (missing = "ml") at lavaan's numbers, faster: three lavaan 0.6-14 internals replaced in
# lavaan's namespace by functions with the same arguments and the same results (the same sums
# in another order: equal to rounding, ~1e-15 relative). tests/test_sem_information.py compares
# each with lavaan's own function and every number vaar reports with plain lavaan. Measured on
# the demo's shape (38 items, 4 groups x 200, 3 % missing; bench/bench_ladder.py, docs/sem.md).

# lavaan's crossprod of a matrix with NA entries (lav_matrix_crossprod: NA products left out of
# each sum) loops over columns in R: the case-wise scores of a FIML fit are NA wherever an
# answer is missing, so their first-order information (MLR's sandwich, its robust test, the
# FIML-corrected fit measures) took ~1.7 s a call at 38 items. Leaving a product out of a sum is
# adding zero: the NA entries set to zero, then one BLAS crossprod.
local({
  crossprod_na <- function(A, B) {
    if (missing(B)) {
      if (!anyNA(A)) return(base::crossprod(A))
      A[is.na(A)] <- 0
      return(base::crossprod(A))
    }
    if (!is.matrix(A)) A <- matrix(A)
    if (!is.matrix(B)) B <- matrix(B)
    A[is.na(A)] <- 0
    B[is.na(B)] <- 0
    base::crossprod(A, B)
  }
  vaar_crossprod_lavaan <<- get("lav_matrix_crossprod", envir = asNamespace("lavaan"))
  vaar_crossprod_na <<- crossprod_na
  utils::assignInNamespace("lav_matrix_crossprod", crossprod_na, ns = "lavaan")
})

# lavaan 0.6-14's Hessian of the FIML log-likelihood of the unrestricted model (the h1
# observed information of a FIML fit: its SEs, its robust test, the baseline's test and
# fitMeasures' robust corrections all use it) forms a P^2 x P^2 Kronecker product and applies
# the duplication matrix to it once per missing-data pattern: with 38 items and ~100 patterns
# a group, 70-80 % of a FIML fit. The sums over patterns are linear, so here they are one
# matrix product over the patterns (sum_p f_p S_p[i,k] T_p[j,l], rearranged into lavaan's
# Kronecker order) and the duplication is applied once: lavaan's function with that change,
# the same sums in another order (equal to rounding, ~1e-15 relative; tests compare every
# reported number with plain lavaan, tests/test_sem_information.py).
local({
  ns <- asNamespace("lavaan")
  symmetric_inverse <- get("lav_matrix_symmetric_inverse", envir = ns)
  inverse_update <- get("lav_matrix_symmetric_inverse_update", envir = ns)
  duplication_pre <- get("lav_matrix_duplication_pre", envir = ns)
  duplication_pre_post <- get("lav_matrix_duplication_pre_post", envir = ns)
  eliminate <- get("eliminate.pstar.idx", envir = ns)
  hessian <- function(Yp = NULL, Mu = NULL, Sigma = NULL, x.idx = NULL,
                      Sinv.method = "eigen", Sigma.inv = NULL) {
    P <- length(Yp[[1]]$var.idx)
    if (is.null(Sigma.inv)) {
      Sigma.inv <- symmetric_inverse(S = Sigma, logdet = FALSE, Sinv.method = Sinv.method)
    }
    n <- length(Yp)
    fS <- matrix(0, n, P * P)  # row p: freq_p * vec(S.inv_p)
    T22 <- matrix(0, n, P * P)  # row p: vec(tmp22_p)
    T21 <- matrix(0, n, P)  # row p: tmp21_p
    for (p in seq_len(n)) {
      var.idx <- Yp[[p]]$var.idx
      na.idx <- which(!var.idx)
      sigma.inv <- if (length(na.idx) > 0L) {
        inverse_update(S.inv = Sigma.inv, rm.idx = na.idx, logdet = FALSE)
      } else {
        Sigma.inv
      }
      S.inv <- matrix(0, P, P)
      S.inv[var.idx, var.idx] <- sigma.inv
      T21[p, var.idx] <- sigma.inv %*% (Yp[[p]]$MY - Mu[var.idx])
      W.tilde <- Yp[[p]]$SY + tcrossprod(Yp[[p]]$MY - Mu[var.idx])
      tmp22 <- matrix(0, P, P)
      tmp22[var.idx, var.idx] <- sigma.inv %*%
        (2 * W.tilde - Sigma[var.idx, var.idx, drop = FALSE]) %*% sigma.inv
      fS[p, ] <- Yp[[p]]$freq * S.inv
      T22[p, ] <- tmp22
    }
    H11 <- matrix(colSums(fS), P, P)
    # (S %x% T)[(i-1)P + j, (k-1)P + l] = S[i,k] T[j,l]: M[i + (k-1)P, j + (l-1)P] summed
    # over patterns, as an array [i, k, j, l], is lavaan's sum in the order [j, i, l, k]
    M <- array(crossprod(fS, T22), c(P, P, P, P))
    K22 <- matrix(aperm(M, c(3, 1, 4, 2)), P * P, P * P)
    # (t %x% S)[(a-1)P + i, k] = t[a] S[i,k]: N[a, i + (k-1)P] as [a, i, k] -> [i, a, k]
    N <- array(crossprod(T21, fS), c(P, P, P))
    K21 <- matrix(aperm(N, c(2, 1, 3)), P * P, P)
    H21 <- duplication_pre(K21)
    H22 <- (1 / 2) * duplication_pre_post(K22)
    out <- -1 * rbind(cbind(H11, t(H21)), cbind(H21, H22))
    if (length(x.idx) > 0L) {
      not.x <- eliminate(nvar = P, el.idx = x.idx, meanstructure = TRUE)
      out[, !not.x] <- 0
      out[!not.x, ] <- 0
    }
    out
  }
  vaar_fiml_hessian_lavaan <<- get("lav_mvnorm_missing_logl_hessian_samplestats", envir = ns)
  vaar_fiml_hessian <<- hessian
  utils::assignInNamespace("lav_mvnorm_missing_logl_hessian_samplestats", hessian,
                           ns = "lavaan")
})

# lavaan's FIML-corrected robust RMSEA and CFI (lav_fit_fiml_corrected, Zhang & Savalei's
# FIML-C) form U = Wm - Wm Delta E.inv Delta' Wm and the traces tr(U A U Gamma) (V3) or tr(U A)
# (V6), A = Wmi Wc Wmi, as products of n x n matrices, n = G (P + P(P+1)/2): ~5 n^3 flops, 25 s
# a fit at 38 items and 4 groups, ~95 % of fitMeasures. Wm, Wmi, Wc and Gamma are
# block-diagonal by group and U is a block-diagonal matrix minus M E.inv M' (M = Wm Delta,
# n x npar), so each trace expands into per-group blocks and npar x npar products (below): the
# same quantity in O(G b^2 npar + npar^3), with no n x n matrix. Its independence model is fitted
# with the standard test only: lavaan's fit of it also computes a robust test the function never
# reads (its estimates, Delta and information do not depend on the test). fitMeasures() calls it
# twice with the same arguments (robust RMSEA, robust CFI): within one vaar_fit_measures call
# (vaar_with_fiml_once) the first result is handed to the second (the same object and version:
# identical numbers).
vaar_fiml_once <- new.env()

# The FIML-corrected test(s) fitMeasures() will ask for `fit`, by version, computed now: a
# level fitted without lavaan's baseline model gets its fit measures only once the configural
# worker has fitted that model, but this part of them (most of their time at 38 items) reads
# neither fit@baseline nor the baseline (lav_fit_fiml_corrected fits its own independence
# model): lavaan's robust RMSEA asks for the same versions as its robust CFI, and needs no
# baseline. vaar_fit_measures(fit, fiml = <this>) hands them to fitMeasures(). Empty unless FIML.
vaar_fiml_ahead <- function(fit) {
  if (is.null(fit) || !fit@Options$missing %in% c("ml", "ml.x")) return(list())
  vaar_with_fiml_once(fit, list(), {
    vaar_capture(fitMeasures(fit, "rmsea.robust"))
    lapply(vaar_fiml_once$seen, function(entry) entry$value)
  })
}

# Evaluate `code` with the memo on for `fit`, holding `fiml` (results by version) to start
# with; the memo is emptied and off again afterwards, whatever happens.
vaar_with_fiml_once <- function(fit, fiml, code) {
  vaar_fiml_once$active <- TRUE
  vaar_fiml_once$seen <- lapply(fiml, function(value) list(object = fit, value = value))
  on.exit({
    vaar_fiml_once$active <- FALSE
    vaar_fiml_once$seen <- list()
  })
  code
}

# tr(U A U Gamma) (V3) or tr(U A) (V6) with U = bdiag(W) - M E.inv t(M), M = bdiag(W) Delta;
# W, A, Gamma: lists of the groups' blocks, Delta: the groups' rows of the Jacobian.
vaar_fimlc_trace <- function(W, A, Gamma, Delta, E.inv, version) {
  groups <- seq_along(W)
  M <- lapply(groups, function(g) W[[g]] %*% Delta[[g]])
  sum_over <- function(f) Reduce(`+`, lapply(groups, f))
  MAM <- sum_over(function(g) crossprod(M[[g]], A[[g]] %*% M[[g]]))
  if (version == "V6") {  # tr(W A) - tr(E M'AM)
    return(sum_over(function(g) sum(W[[g]] * t(A[[g]]))) - sum(E.inv * t(MAM)))
  }
  # tr(UAUG) = tr(WAWG) - 2 tr(E M'AWGM) + tr(E M'AM E M'GM)  (A, W, Gamma, E symmetric)
  MGM <- sum_over(function(g) crossprod(M[[g]], Gamma[[g]] %*% M[[g]]))
  WAWG <- sum_over(function(g) sum((W[[g]] %*% A[[g]]) * t(W[[g]] %*% Gamma[[g]])))
  MAWGM <- sum_over(function(g) crossprod(A[[g]] %*% M[[g]], W[[g]] %*% Gamma[[g]] %*% M[[g]]))
  WAWG - 2 * sum(E.inv * t(MAWGM)) + sum((E.inv %*% MAM) * t(E.inv %*% MGM))
}

local({
  ns <- asNamespace("lavaan")
  lav <- function(name) get(name, envir = ns)
  h1_observed <- lav("lav_model_h1_information_observed")
  h1_firstorder <- lav("lav_model_h1_information_firstorder")
  independence <- lav("lav_object_independence")
  symmetric_inverse <- lav("lav_matrix_symmetric_inverse")
  # lavaan's refit at the h1 moments: the fit's own model or its independence model
  at_h1 <- function(partable, cov, mean, nobs) {
    try(lavaan::lavaan(model = partable, sample.cov = cov, sample.mean = mean,
                       sample.nobs = nobs, sample.cov.rescale = FALSE, information = "observed",
                       optim.method = "none", se = "none", test = "standard",
                       baseline = FALSE, check.post = FALSE),
        silent = TRUE)
  }
  corrected <- function(lavobject, version = "V3") {
    version <- toupper(version)
    if (!version %in% c("V3", "V6")) {
      stop("lavaan ERROR: only FIML-C(V3) and FIML-C(V6) are available.")
    }
    out <- list(XX3 = NA_real_, df3 = NA_real_, c.hat3 = NA_real_, XX3.scaled = NA_real_,
                XX3.null = NA_real_, df3.null = NA_real_, c.hat3.null = NA_real_)
    if (lavobject@Options$conditional.x || lavobject@Data@nlevels > 1L ||
        !.hasSlot(lavobject, "h1") || is.null(lavobject@h1$implied$cov[[1]])) {
      return(out)
    }
    h1 <- lavaan::lavTech(lavobject, "h1", add.labels = TRUE)
    COV <- lapply(h1, "[[", "cov")
    MEAN <- lapply(h1, "[[", "mean")
    nobs <- unlist(lavobject@SampleStats@nobs)
    fit.tilde <- at_h1(lavaan::parTable(lavobject), COV, MEAN, nobs)
    if (inherits(fit.tilde, "try-error")) return(out)
    out$XX3 <- fit.tilde@test[[1]]$stat
    out$df3 <- fit.tilde@test[[1]]$df
    lavobject@Options$h1.information <- c("unstructured", "unstructured")
    lavobject@Options$observed.information <- c("h1", "h1")
    fit.tilde@Options$h1.information <- c("unstructured", "unstructured")
    Wm <- h1_observed(lavobject)
    Jm <- if (version == "V3") h1_firstorder(lavobject)
    Wc <- h1_observed(fit.tilde)
    Wmi <- try(lapply(Wm, symmetric_inverse), silent = TRUE)
    if (inherits(Wmi, "try-error")) return(out)
    fg <- nobs / lavobject@SampleStats@ntotal
    groups <- seq_along(Wm)
    W <- lapply(groups, function(g) fg[g] * Wm[[g]])
    A <- lapply(groups, function(g) (1 / fg[g] * Wmi[[g]]) %*% (fg[g] * Wc[[g]]) %*%
                                      (1 / fg[g] * Wmi[[g]]))
    Gamma <- if (version == "V3") {
      lapply(groups, function(g) 1 / fg[g] * (Wmi[[g]] %*% Jm[[g]] %*% Wmi[[g]]))
    }
    k <- vaar_fimlc_trace(W, A, Gamma, lavaan::lavTech(lavobject, "delta"),
                          lavaan::lavTech(lavobject, "inverted.information"), version)
    out$c.hat3 <- k / out$df3
    out$XX3.scaled <- out$XX3 / out$c.hat3
    standard <- lavobject
    standard@Options$test <- "standard"
    fitB <- try(independence(standard), silent = TRUE)
    if (inherits(fitB, "try-error")) return(out)
    fitB.tilde <- at_h1(lavaan::parTable(fitB), COV, MEAN, nobs)
    if (inherits(fitB.tilde, "try-error")) return(out)
    out$XX3.null <- fitB.tilde@test[[1]]$stat
    out$df3.null <- fitB.tilde@test[[1]]$df
    fitB@Options$h1.information <- c("unstructured", "unstructured")
    fitB@Options$observed.information <- c("h1", "h1")
    kB <- vaar_fimlc_trace(W, A, Gamma, lavaan::lavTech(fitB, "Delta"),
                           lavaan::lavTech(fitB, "inverted.information"), version)
    out$c.hat3.null <- kB / out$df3.null
    out
  }
  once <- function(lavobject, version = "V3") {
    if (!isTRUE(vaar_fiml_once$active)) return(corrected(lavobject, version))
    key <- toupper(version)
    seen <- vaar_fiml_once$seen[[key]]
    if (!is.null(seen) && identical(seen$object, lavobject)) return(seen$value)
    value <- corrected(lavobject, version)
    vaar_fiml_once$seen[[key]] <- list(object = lavobject, value = value)
    value
  }
  vaar_fiml_corrected_lavaan <<- lav("lav_fit_fiml_corrected")
  vaar_fiml_corrected <<- corrected
  utils::assignInNamespace("lav_fit_fiml_corrected", once, ns = "lavaan")
})
