"""Reports: one estimates document per study (estimates.json, versioned JSON Schema) rendered to
a self-contained HTML page and CSV tables; `vaar analyze` for files, stores and batches."""

from vaar.report.document import SCHEMA_VERSION, build_estimates, validate_estimates
from vaar.report.html import render_html
from vaar.report.write import write_report

__all__ = [
    "SCHEMA_VERSION",
    "build_estimates",
    "render_html",
    "validate_estimates",
    "write_report",
]
