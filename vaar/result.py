"""StudyResult: one analysed study as typed stage results, the same type in memory and on disk.

Each stage hands on its own result: vaar.collection a CollectionSummary, vaar.sem a SemResult,
vaar.alignment an AlignmentResult and Profiles. With what was studied (StudyInfo, one
InstrumentInfo per instrument, the model) they make a StudyResult. `vaar.report` writes it as
estimates.json and `vaar.report.read_estimates` reads that file back into a StudyResult (the
raw tables, the live study config and lavaan's text output are not part of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from vaar.collection.summary import CollectionSummary, counted_models, unscored_examples
from vaar.instruments import Role
from vaar.sem.model import VaarModel

if TYPE_CHECKING:
    import pandas as pd

    from vaar.alignment.profile import Profiles
    from vaar.alignment.result import AlignmentResult
    from vaar.config import Study
    from vaar.instruments import Instrument
    from vaar.multiverse.result import MultiverseResult
    from vaar.sem.result import SemResult


@dataclass(kw_only=True)
class StudyInfo:
    """What was studied: the study's settings, or what the data show when there is no study
    config (models from the SEM's groups, estimator and levels from the fit)."""

    name: str
    description: str = ""
    seed: int | None = None
    models: list[str]
    sessions_per_model: int | None = None
    n_sessions: int  # rows of the analysed wide table
    estimator: str | None
    levels: list[str | None]
    vaar_level: str | None = None
    alpha: float | None = None
    history: dict | None = None
    items_per_turn: int | None = None

    @classmethod
    def describe(
        cls, name: str, study: Study | None, wide: pd.DataFrame, sem: SemResult
    ) -> StudyInfo:
        if study is None:
            return cls(
                name=name,
                models=_fitted_models(sem, wide),
                n_sessions=len(wide),
                estimator=sem.estimator,
                levels=list(sem.fits["level"]) if "level" in sem.fits else [],
            )
        analysis = study.analysis
        return cls(
            name=name,
            description=study.description,
            seed=study.seed,
            models=[m.name for m in study.models],
            sessions_per_model=study.sessions_per_model,
            n_sessions=len(wide),
            estimator=analysis.estimator,
            levels=list(analysis.levels),
            vaar_level=analysis.vaar_level,
            alpha=analysis.alpha,
            history=study.session.history.model_dump(mode="json"),
            items_per_turn=study.session.items_per_turn,
        )


def _fitted_models(sem: SemResult, wide: pd.DataFrame) -> list[str]:
    """The SEM's groups in the order of its estimates, else the wide table's models."""
    groups = sem.estimates["group"].dropna() if "group" in sem.estimates else []
    models = list(dict.fromkeys(str(g) for g in groups))
    if not models and "model" in wide:
        models = list(dict.fromkeys(str(m) for m in wide["model"]))
    return models


@dataclass(kw_only=True)
class InstrumentInfo:
    """What a report says about an instrument (its items stay in the instrument file)."""

    id: str
    title: str
    short_title: str
    role: Role
    citation: str
    provenance: str
    vaar_own: bool
    n_items: int
    scale_min: int
    scale_max: int
    factors: list[str]
    content_hash: str

    @classmethod
    def of(cls, instrument: Instrument) -> InstrumentInfo:
        return cls(
            id=instrument.id,
            title=instrument.title,
            short_title=instrument.short_title,
            role=instrument.role,
            citation=instrument.citation,
            provenance=instrument.provenance,
            vaar_own=instrument.vaar_own,
            n_items=len(instrument.items),
            scale_min=instrument.scale_min,
            scale_max=instrument.scale_max,
            factors=list(instrument.factors),
            content_hash=instrument.content_hash,
        )


@dataclass(kw_only=True)
class StudyResult:
    """Everything a report shows about one analysed study."""

    study: StudyInfo
    instruments: list[InstrumentInfo]
    collection: CollectionSummary
    model: VaarModel  # a user's own lavaan model has no structural paths VAAR scores
    sem: SemResult
    alignment: AlignmentResult | None = None  # None for a user's own model (no VAAR)
    profiles: Profiles | None = None  # None for a user's own model
    multiverse: MultiverseResult | None = None  # a multiverse study's comparison of variants
    provenance: dict = field(default_factory=dict)  # versions, seeds, config, hashes
    timings: dict = field(default_factory=dict)  # stage -> seconds

    @property
    def name(self) -> str:
        return self.study.name

    @classmethod
    def from_analysis(
        cls,
        *,
        name: str,
        study: Study | None,
        instruments: list[Instrument],
        wide: pd.DataFrame,
        long: pd.DataFrame | None,
        collection: CollectionSummary | None,
        model: VaarModel | str,
        sem: SemResult,
        alignment: AlignmentResult | None = None,
        profiles: Profiles | None = None,
        provenance: dict | None = None,
        timings: dict | None = None,
    ) -> StudyResult:
        """A StudyResult from the analysis' inputs: the study config (None for a bare data
        file), the instruments, the tables analysed and the collection summary (None when the
        answers came as a table: the counts are then taken from the tables)."""
        summary = collection or CollectionSummary(None)
        summary = replace(
            summary,
            models=summary.models or counted_models(long, wide),
            unscored_examples=unscored_examples(long),
        )
        return cls(
            study=StudyInfo.describe(name, study, wide, sem),
            instruments=[InstrumentInfo.of(i) for i in instruments],
            collection=summary,
            model=model if isinstance(model, VaarModel) else VaarModel(model, [], []),
            sem=sem,
            alignment=alignment,
            profiles=profiles,
            provenance=provenance or {},
            timings=timings or {},
        )
