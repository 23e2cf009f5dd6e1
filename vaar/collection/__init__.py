"""The collection stage: providers, sessions, answer parsing, throughput control, the SQLite
store and progress. `collect(study)` runs (or resumes) a study; see docs/collection.md."""

from vaar.collection.runner import CollectionSummary, collect

__all__ = ["CollectionSummary", "collect"]
