"""Value-action alignment: the human reference, VAAR scores and their uncertainty, and the
models' questionnaire profiles. Fits nothing itself: refits go through vaar.sem.

    reference = load_reference()                     # data/reference/human_signs.toml
    result = align(sem_result, vaar_model.paths, reference, level="configural")
    result.scores, result.evidence, result.not_estimable, result.to_dict()
    boot = bootstrap_vaar(scored_wide, RefitSpec(syntax, paths, reference), draws=200)
    align(..., bootstrap=boot)                       # adds CI columns to scores
    profiles(long, wide, instruments)                # per-model questionnaire profiles
"""

from vaar.alignment.bootstrap import BootstrapResult, RefitSpec, bootstrap_vaar, resample
from vaar.alignment.executors import refit_executor
from vaar.alignment.profiles import Profiles, profiles
from vaar.alignment.reference import (
    Reference,
    StructuralPath,
    load_reference,
    reference_from_group,
)
from vaar.alignment.result import FORMULA_NOTE, AlignmentResult, align, resolve_level
from vaar.alignment.scores import LOGLOSS_FLOOR, path_evidence, scores_from_evidence, vaar_scores

__all__ = [
    "FORMULA_NOTE",
    "LOGLOSS_FLOOR",
    "AlignmentResult",
    "BootstrapResult",
    "Profiles",
    "Reference",
    "RefitSpec",
    "StructuralPath",
    "align",
    "bootstrap_vaar",
    "load_reference",
    "path_evidence",
    "profiles",
    "reference_from_group",
    "refit_executor",
    "resample",
    "resolve_level",
    "scores_from_evidence",
    "vaar_scores",
]
