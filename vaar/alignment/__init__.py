"""Value-action alignment: the human reference, VAAR scores and their uncertainty, and the
models' questionnaire profiles. Fits nothing itself: refits go through vaar.sem."""

from vaar.alignment.profiles import Profiles, profiles
from vaar.alignment.reference import (
    Reference,
    StructuralPath,
    load_reference,
    reference_from_group,
)
from vaar.alignment.scores import LOGLOSS_FLOOR, path_evidence, scores_from_evidence, vaar_scores

__all__ = [
    "LOGLOSS_FLOOR",
    "Profiles",
    "Reference",
    "StructuralPath",
    "load_reference",
    "path_evidence",
    "profiles",
    "reference_from_group",
    "scores_from_evidence",
    "vaar_scores",
]
