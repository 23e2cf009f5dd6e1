# Ordinal (WLSMV, theta) invariance syntax through semTools::measEq.syntax with the Wu &
# Estabrook (2016) identification. measEq.syntax only accepts CFA models, so latent regressions
# are first turned into latent covariances (an equivalent model when the structural part is
# saturated) and then put back as free per-group regressions in the generated syntax.

# The model's statements: R only gets the allow-list's rebuild of a model (check_model in
# vaar.sem.grammar, which reads statements as lavaan does), one statement per line.
vaar_statements <- function(syntax) {
  lines <- trimws(strsplit(syntax, "\n", fixed = TRUE)[[1]])
  lines[nzchar(lines)]
}

vaar_latent_names <- function(syntax) {
  st <- vaar_statements(syntax)
  st <- st[grepl("=~", st, fixed = TRUE)]
  unique(trimws(sub("=~.*$", "", st)))
}

vaar_term_variable <- function(term) trimws(sub("^.*\\*", "", term))

# Split a model into its CFA version and the latent regressions it had.
vaar_split_regressions <- function(syntax) {
  latent <- vaar_latent_names(syntax)
  cfa <- character(0)
  regressions <- character(0)
  pairs <- list()
  for (st in vaar_statements(syntax)) {
    m <- regmatches(st, regexec("^([A-Za-z.][A-Za-z0-9._]*)\\s*~\\s*([^~].*)$", st))[[1]]
    is_reg <- length(m) == 3 && !grepl("^\\s*1\\s*$", m[3]) && m[2] %in% latent
    if (is_reg) {
      rhs <- vaar_term_variable(trimws(unlist(strsplit(m[3], "+", fixed = TRUE))))
      if (all(rhs %in% latent)) {
        regressions <- c(regressions, st)
        cfa <- c(cfa, paste(m[2], "~~", m[3]))
        for (r in rhs) pairs[[length(pairs) + 1]] <- c(m[2], r)
        next
      }
    }
    cfa <- c(cfa, st)
  }
  list(cfa = paste(cfa, collapse = "\n"), regressions = regressions, pairs = pairs)
}

# The full lavaan syntax of one ordinal invariance level (group.equal as in lavaan).
vaar_ordinal_syntax <- function(syntax, data, group, ordered, group.equal, group.partial) {
  split <- vaar_split_regressions(syntax)
  me <- measEq.syntax(
    configural.model = split$cfa, data = data, group = group, ordered = ordered,
    parameterization = "theta", ID.fac = "std.lv", ID.cat = "Wu.Estabrook.2016",
    group.equal = if (length(group.equal) == 0) "" else group.equal,
    group.partial = if (length(group.partial) == 0) "" else group.partial
  )
  lines <- strsplit(as.character(me), "\n")[[1]]
  keep <- vapply(lines, function(line) {
    m <- regmatches(line, regexec("^(\\S+) ~~ .*\\*(\\S+)$", line))[[1]]
    if (length(m) != 3 || m[2] == m[3]) {
      return(TRUE)
    }
    !any(vapply(split$pairs, function(p) setequal(p, m[2:3]), logical(1)))
  }, logical(1))
  if (length(split$regressions) > 0) {
    lines <- c(lines[keep], "", "## structural regressions, free in every group", split$regressions)
  }
  paste(lines, collapse = "\n")
}
