"""The whole chain for one study: collect -> tables -> lavaan -> VAAR -> report.

Each step is a call into its own package; this module only sequences them and times them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from vaar.config import Study


@dataclass
class StudyResult:
    """Everything a report needs about one analysed study (plain data, no live R objects)."""

    study: Study | None  # None when analysing a data file without a study config
    name: str
    instruments: list  # list[vaar.instruments.Instrument]
    collection: dict  # per-model collection summary (sessions, valid rate, tokens, cost), may be {}
    long: pd.DataFrame | None  # long table (see docs/architecture.md), None for wide-only input
    wide: pd.DataFrame  # raw wide table as analysed
    model: Any  # vaar.sem.VaarModel (syntax, paths) or a user model
    sem: Any  # vaar.sem.SemResult
    alignment: Any  # vaar.alignment result: scores, path evidence, reference, bootstrap
    profiles: Any  # vaar.alignment profiles
    provenance: dict = field(default_factory=dict)  # versions, seeds, config, hashes
    timings: dict = field(default_factory=dict)  # stage -> seconds
