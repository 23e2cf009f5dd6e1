# lavaan's information matrices for many groups at (near) linear cost, with lavaan's numbers.
#
# Measured on 16 groups x 38 items x 200 sessions, MLR, configural (docs/sem.md, "Many
# groups"): lavaan 0.6-14 spends 83% of the fit in its numerical Hessian (the observed
# information, MLR's and FIML's default; lav_model_hessian), which moves each of the npar free
# parameters in turn and evaluates the gradient of the whole model four times. A gradient costs
# O(G) and npar is O(G), so the Hessian costs O(G^2). Its first-order information
# (lav_model_information_firstorder, the meat of MLR's sandwich and of its test) forms
# t(Delta_g) B1_g Delta_g with each group's Delta_g as wide as the whole model, and keeps one
# npar x npar matrix per group: O(G^3) time and memory.
#
# In lavaan 0.6-14 every free parameter belongs to the matrices of one group: equality across
# groups (group.equal, shared labels) is a constraint (`==`) between separate parameters, applied
# after these matrices are formed (unless `ceq.simple = TRUE`, which vaar never sets). So:
#  - a gradient entry depends only on the parameters of its own group: the Hessian (of the
#    unconstrained fit function, as lavaan takes it) is block-diagonal by group, and the columns
#    of different groups can be taken from the same four gradients by moving one parameter of
#    every group at once (Curtis, Powell & Reid 1974). Each entry of a group's block sees only
#    its own moved parameter: the same numbers as lavaan's loop; entries between groups, zero
#    in exact arithmetic, are exact zeros here (lavaan's are rounding noise, ~1e-13).
#  - Delta_g is zero outside group g's columns, so t(Delta_g) B1_g Delta_g is zero outside
#    group g's block: it is formed on that block only and kept as one (vaar_block_matrix).
# Where the structure is not this one (the checks in vaar_group_parameters), lavaan's own
# functions run. tests/test_sem_groups.py compares the matrices with lavaan's own and every
# number vaar reports with plain lavaan.

# The free parameters of each group (block): a list of index vectors into lavaan's free
# parameter vector, or NULL where a parameter is not in exactly one group's matrices (then the
# structure above does not hold) or lavaan would not use the analytic gradient.
vaar_group_parameters <- function(lavmodel, lavdata, lavoptions = NULL, ceq.simple = FALSE) {
  if ((!is.null(lavoptions) && lavoptions$optim.gradient == "numerical") ||
      (!is.null(lavdata) && lavdata@nlevels != 1L) || lavmodel@group.w.free ||
      lavmodel@nblocks < 2L ||
      (!ceq.simple && .hasSlot(lavmodel, "ceq.simple.only") && lavmodel@ceq.simple.only)) {
    return(NULL)
  }
  first <- cumsum(c(0, lavmodel@nmat))
  groups <- lapply(seq_len(lavmodel@nblocks), function(b) {
    sort(unique(unlist(lavmodel@x.free.idx[first[b] + seq_len(lavmodel@nmat[b])])))
  })
  all <- unlist(groups)
  if (length(all) != lavmodel@nx.free || anyDuplicated(all)) {
    return(NULL)
  }
  groups
}

# lavaan's lav_model_hessian (same arguments and formula: the 5-point difference of the
# analytic gradient, its symmetry check, the symmetrised result), the columns of all groups taken
# from shared gradients. `lavaan_hessian`: lavaan's own, for models without that structure.
vaar_block_hessian <- function(lavmodel = NULL, lavsamplestats = NULL, lavdata = NULL,
                               lavoptions = NULL, lavcache = NULL, group.weight = TRUE,
                               ceq.simple = FALSE, h = 1e-06, lavaan_hessian) {
  groups <- vaar_group_parameters(lavmodel, lavdata, lavoptions, ceq.simple)
  if (is.null(groups)) {
    return(lavaan_hessian(lavmodel = lavmodel, lavsamplestats = lavsamplestats,
                          lavdata = lavdata, lavoptions = lavoptions, lavcache = lavcache,
                          group.weight = group.weight, ceq.simple = ceq.simple, h = h))
  }
  npar <- lavmodel@nx.free
  x <- lavaan:::lav_model_get_parameters(lavmodel = lavmodel)
  gradient <- function(moved, by) {
    x.moved <- x
    x.moved[moved] <- x[moved] + by
    lavaan:::lav_model_gradient(
      lavmodel = lavmodel,
      GLIST = lavaan:::lav_model_x2GLIST(lavmodel = lavmodel, type = "free", x.moved),
      lavsamplestats = lavsamplestats, lavdata = lavdata, lavcache = lavcache,
      type = "free", group.weight = group.weight, ceq.simple = ceq.simple
    )
  }
  Hessian <- matrix(0, npar, npar)
  for (r in seq_len(max(lengths(groups)))) {
    moved <- unlist(lapply(groups, function(p) p[r]))  # the r-th parameter of every group
    moved <- moved[!is.na(moved)]
    column <- (gradient(moved, -2 * h) - 8 * gradient(moved, -h) + 8 * gradient(moved, h) -
                 gradient(moved, 2 * h)) / (12 * h)
    for (p in groups) {
      if (length(p) >= r) Hessian[p, p[r]] <- column[p]
    }
  }
  max.diff <- max(abs(Hessian - t(Hessian)))
  if (max.diff > 1e-05 * max(diag(Hessian))) {
    warning("lavaan WARNING: Hessian is not fully symmetric.", "\n\tMax diff = ", max.diff,
            "\n\t(Max diag Hessian = ", max(diag(Hessian)), ")")
  }
  (Hessian + t(Hessian)) / 2
}

# lavaan's lav_model_information_firstorder (same arguments, same result), each group's
# t(Delta_g) B1_g Delta_g formed on its own parameters; the per-group matrices it returns with
# `extra` (B0.group: lavaan's robust test sums each times E.inv) as vaar_block_matrix.
# `b0_only`: the caller reads B0.group alone (MLR's sandwich and robust test, see
# vaar_use_block_information), so the other `extra` attributes, lavaan's whole Jacobian (Delta:
# one rows x npar matrix a group, 187 MB at 16 groups x 38 items) and B1, are not attached, and
# the Jacobian is kept a group's own columns at a time: 30 % less peak memory at 16 groups.
vaar_block_firstorder <- function(lavmodel = NULL, lavsamplestats = NULL, lavdata = NULL,
                                  lavimplied = NULL, lavh1 = NULL, lavcache = NULL,
                                  lavoptions = NULL, check.pd = FALSE, extra = FALSE,
                                  augmented = FALSE, inverted = FALSE, use.ginv = FALSE,
                                  lavaan_firstorder, b0_only = FALSE) {
  groups <- vaar_group_parameters(lavmodel, lavdata)
  if (is.null(groups) || !lavmodel@estimator %in% "ML" ||
      lavsamplestats@ngroups != lavmodel@nblocks) {
    return(lavaan_firstorder(lavmodel = lavmodel, lavsamplestats = lavsamplestats,
                             lavdata = lavdata, lavimplied = lavimplied, lavh1 = lavh1,
                             lavcache = lavcache, lavoptions = lavoptions, check.pd = check.pd,
                             extra = extra, augmented = augmented, inverted = inverted,
                             use.ginv = use.ginv))
  }
  if (inverted) augmented <- TRUE
  npar <- lavmodel@nx.free
  Delta <- lavaan:::computeDelta(lavmodel = lavmodel)
  own <- function(g) Delta[[g]][, groups[[g]], drop = FALSE]
  if (b0_only) Delta <- lapply(seq_along(Delta), own)  # the whole Jacobian is garbage now
  B1 <- lavaan:::lav_model_h1_information_firstorder(
    lavmodel = lavmodel, lavsamplestats = lavsamplestats, lavdata = lavdata,
    lavoptions = lavoptions, lavimplied = lavimplied, lavh1 = lavh1, lavcache = lavcache
  )
  B0.group <- vector("list", lavsamplestats@ngroups)
  Information <- matrix(0, npar, npar)
  for (g in seq_len(lavsamplestats@ngroups)) {
    p <- groups[[g]]
    D <- if (b0_only) Delta[[g]] else own(g)
    block <- t(D) %*% B1[[g]] %*% D
    Information[p, p] <- Information[p, p] + lavsamplestats@nobs[[g]] /
      lavsamplestats@ntotal * block
    if (extra) B0.group[[g]] <- vaar_block_matrix(block, p, npar)
  }
  if (augmented) {
    Information <- lavaan:::lav_model_information_augment_invert(
      lavmodel = lavmodel, information = Information, check.pd = check.pd,
      inverted = inverted, use.ginv = use.ginv
    )
  }
  if (extra) {
    attr(Information, "B0.group") <- B0.group
    if (!b0_only) {
      attr(Information, "Delta") <- Delta
      attr(Information, "WLS.V") <- B1
    }
  }
  Information
}

# lavaan's lav_model_information_augment_invert (same arguments, same result) for an
# information matrix that is block-diagonal by group with no constraint to augment it by (the
# configural model's Hessian and first-order information above): its eigenvalues (check.pd) are
# its blocks' and its inverse is theirs, O(G b^3) instead of O((G b)^3). lavaan's solve() fails
# on a matrix whose condition estimate is below machine precision; the blocks' exact 1-norm
# condition is never above that estimate, so at or near singularity (a block that does not
# solve, or that condition below precision) lavaan's own function decides, as it would.
vaar_block_invert <- function(lavmodel = NULL, information = NULL, inverted = FALSE,
                              check.pd = FALSE, use.ginv = FALSE, lavaan_invert) {
  lavaan_own <- function() {
    lavaan_invert(lavmodel = lavmodel, information = information, inverted = inverted,
                  check.pd = check.pd, use.ginv = use.ginv)
  }
  groups <- if (nrow(lavmodel@con.jac) == 0L && !use.ginv) {
    vaar_group_parameters(lavmodel, lavdata = NULL)
  }
  if (is.null(groups) || nrow(information) != lavmodel@nx.free) return(lavaan_own())
  group_of <- integer(nrow(information))
  for (g in seq_along(groups)) group_of[groups[[g]]] <- g
  if (any(information[outer(group_of, group_of, "!=")] != 0)) return(lavaan_own())
  blocks <- lapply(groups, function(p) information[p, p, drop = FALSE])
  if (check.pd) {
    eigvals <- unlist(lapply(blocks, function(b) {
      eigen(b, symmetric = TRUE, only.values = TRUE)$values
    }))
    if (any(eigvals < -1 * .Machine$double.eps^(3 / 4))) {
      warning("lavaan WARNING: information matrix is not positive definite; the model may ",
              "not be identified")
    }
  }
  if (!inverted) return(information)
  inverses <- lapply(blocks, function(b) try(solve(b), silent = TRUE))
  if (any(vapply(inverses, inherits, logical(1), "try-error"))) return(lavaan_own())
  norm1 <- function(x) max(vapply(x, norm, 0, type = "O"))
  if (1 / (norm1(blocks) * norm1(inverses)) < .Machine$double.eps) return(lavaan_own())
  out <- matrix(0, nrow(information), ncol(information))
  for (g in seq_along(groups)) out[groups[[g]], groups[[g]]] <- inverses[[g]]
  out
}

# An npar x npar matrix that is zero outside rows and columns `p` (one group's parameters),
# kept as that block (lavaan keeps G of them). Elementwise `*` with a matrix keeps the block and
# `sum` sums it (all lavaan does with them: its robust test's sum(B0.group[[g]] * t(E.inv)));
# anything else gets the whole matrix.
vaar_block_matrix <- function(block, p, npar) {
  structure(list(block = block, p = p, npar = npar), class = "vaar_block_matrix")
}

as.matrix.vaar_block_matrix <- function(x, ...) {
  out <- matrix(0, x$npar, x$npar)
  out[x$p, x$p] <- x$block
  out
}

Ops.vaar_block_matrix <- function(e1, e2) {
  full <- function(e) if (inherits(e, "vaar_block_matrix")) as.matrix(e) else e
  block <- if (inherits(e1, "vaar_block_matrix")) e1 else e2
  other <- if (inherits(e1, "vaar_block_matrix")) e2 else e1
  if (.Generic == "*" && !inherits(other, "vaar_block_matrix") && is.matrix(other) &&
      all(dim(other) == block$npar)) {
    return(vaar_block_matrix(block$block * other[block$p, block$p], block$p, block$npar))
  }
  get(.Generic)(full(e1), full(e2))
}

Summary.vaar_block_matrix <- function(..., na.rm = FALSE) {
  x <- list(...)
  if (.Generic == "sum" && length(x) == 1L) {
    return(sum(x[[1]]$block, na.rm = na.rm))
  }
  do.call(.Generic, c(lapply(x, as.matrix), na.rm = na.rm))
}

# Put vaar_block_hessian and vaar_block_firstorder in lavaan's place, once per R process, on the
# lavaan release whose functions were read for them (0.6-14; any other keeps its own). Returns
# whether they are in place.
vaar_use_block_information <- function() {
  ns <- asNamespace("lavaan")
  hessian <- get("lav_model_hessian", envir = ns)
  firstorder <- get("lav_model_information_firstorder", envir = ns)
  if (isTRUE(attr(hessian, "vaar"))) {
    return(TRUE)
  }
  if (packageVersion("lavaan") != "0.6.14") {
    return(FALSE)
  }
  invert <- get("lav_model_information_augment_invert", envir = ns)
  block_invert <- function(lavmodel = NULL, information = NULL, inverted = FALSE,
                           check.pd = FALSE, use.ginv = FALSE) {
    vaar_block_invert(lavmodel, information, inverted, check.pd, use.ginv,
                      lavaan_invert = invert)
  }
  b0_readers <- lapply(c("lav_model_nvcov_robust_sandwich", "lav_test_yuan_bentler"), get,
                       envir = ns)
  block_hessian <- function(lavmodel = NULL, lavsamplestats = NULL, lavdata = NULL,
                            lavoptions = NULL, lavcache = NULL, group.weight = TRUE,
                            ceq.simple = FALSE, h = 1e-06) {
    vaar_block_hessian(lavmodel, lavsamplestats, lavdata, lavoptions, lavcache, group.weight,
                       ceq.simple, h, lavaan_hessian = hessian)
  }
  block_firstorder <- function(lavmodel = NULL, lavsamplestats = NULL, lavdata = NULL,
                               lavimplied = NULL, lavh1 = NULL, lavcache = NULL,
                               lavoptions = NULL, check.pd = FALSE, extra = FALSE,
                               augmented = FALSE, inverted = FALSE, use.ginv = FALSE) {
    # lavaan 0.6-14's two callers that ask for `extra` and read only its B0.group
    parent <- sys.parent()
    caller <- if (parent > 0L) sys.function(parent)
    b0_only <- extra && any(vapply(b0_readers, identical, logical(1), caller))
    vaar_block_firstorder(lavmodel, lavsamplestats, lavdata, lavimplied, lavh1, lavcache,
                          lavoptions, check.pd, extra, augmented, inverted, use.ginv,
                          lavaan_firstorder = firstorder, b0_only = b0_only)
  }
  for (generic in c("Ops", "Summary", "as.matrix")) {
    registerS3method(generic, "vaar_block_matrix",
                     get(paste0(generic, ".vaar_block_matrix")), envir = ns)
  }
  attr(block_hessian, "vaar") <- TRUE
  utils::assignInNamespace("lav_model_hessian", block_hessian, ns = "lavaan")
  utils::assignInNamespace("lav_model_information_firstorder", block_firstorder, ns = "lavaan")
  utils::assignInNamespace("lav_model_information_augment_invert", block_invert, ns = "lavaan")
  TRUE
}

# In place whenever these functions are sourced (vaar.sem.bridge, the bundle's analysis.R).
invisible(vaar_use_block_information())
