# Arguments as data. vaar.sem hands R tables whose list cells are joined by commas
# (vaar_split), and a reproduction bundle holds the arguments of its call as files
# (vaar_read_call): arguments.csv, one row per argument (name, type, vector, value), where
# type "table" names a CSV file of text columns and type "list" a CSV of named numbers.

vaar_split <- function(text) {
  if (length(text) == 0 || is.na(text) || !nzchar(text)) character(0) else
    strsplit(text, ",", fixed = TRUE)[[1]]
}

vaar_read_csv <- function(path, ...) {
  read.csv(path, na.strings = character(0), stringsAsFactors = FALSE, check.names = FALSE,
           ...)
}

# The named list of arguments written by vaar.sem.bundle into `dir`.
vaar_read_call <- function(dir, file = "arguments.csv") {
  rows <- vaar_read_csv(file.path(dir, file), colClasses = "character")
  args <- list()
  for (i in seq_len(nrow(rows))) {
    row <- rows[i, ]
    args[[row$name]] <- switch(row$type,
      table = vaar_read_csv(file.path(dir, row$value), colClasses = "character"),
      list = {
        t <- vaar_read_csv(file.path(dir, row$value), colClasses = c("character", "numeric"))
        setNames(as.list(t$value), t$name)
      },
      {
        value <- if (row$vector == "TRUE") vaar_split(row$value) else row$value
        storage.mode(value) <- row$type
        value
      }
    )
  }
  args
}
