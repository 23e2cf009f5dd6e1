"""Reports: one estimates document per study (estimates.json, versioned JSON Schema) rendered to
a self-contained HTML page and CSV tables, and the index page of a batch of reports."""

from vaar.lazy import lazy_exports

EXPORTS = {
    "SCHEMA_VERSION": "document",
    "build_estimates": "document",
    "read_estimates": "read",
    "render_html": "html",
    "validate_estimates": "document",
    "write_report": "write",
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
