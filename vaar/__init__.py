"""vaar: value-action alignment of large language models.

Data flows one way: instruments and config -> sessions (collection) -> store -> tables (data)
-> R/lavaan (sem) -> estimates -> VAAR (alignment) -> report.
"""

__version__ = "0.1.0"
