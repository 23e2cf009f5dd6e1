"""The collection stage: providers, sessions, answer parsing, throughput control, the SQLite
store and progress. `collect(study)` runs (or resumes) a study; see docs/collection.md."""

from vaar.lazy import lazy_exports

EXPORTS = {
    "CollectionSummary": "summary",
    "collect": "runner",
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
