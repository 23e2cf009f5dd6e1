"""StudyResult: one analysed study as typed stage results (plain data, no live R objects).

Every stage hands its own result type on: vaar.sem a SemResult, vaar.alignment an
AlignmentResult and Profiles. The report renders a StudyResult; it never imports the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from vaar.alignment.profile import Profiles
    from vaar.alignment.result import AlignmentResult
    from vaar.config import Study
    from vaar.instruments import Instrument
    from vaar.sem.model import VaarModel
    from vaar.sem.result import SemResult


@dataclass
class StudyResult:
    """Everything a report needs about one analysed study."""

    study: Study | None  # None when analysing a data file without a study config
    name: str
    instruments: list[Instrument]
    collection: dict  # per-model collection summary (sessions, valid rate, tokens, cost), may be {}
    long: pd.DataFrame | None  # long table (see docs/architecture.md), None for wide-only input
    wide: pd.DataFrame  # raw wide table as analysed
    model: VaarModel | str  # the vaar model, or a user's own lavaan syntax
    sem: SemResult
    alignment: AlignmentResult | None  # None for a user's own model (no VAAR)
    profiles: Profiles | None  # None for a user's own model
    provenance: dict = field(default_factory=dict)  # versions, seeds, config, hashes
    timings: dict = field(default_factory=dict)  # stage -> seconds
