"""Value-action alignment: the human reference, VAAR scores and their uncertainty, and the
models' questionnaire profiles. Fits nothing itself: refits go through vaar.sem.

    reference = load_reference()                     # vaar/alignment/human_signs.toml
    result = align(sem_result, vaar_model.paths, reference, level="configural")
    result.scores, result.evidence, result.not_estimable, result.to_dict()
    boot = bootstrap_vaar(scored_wide, RefitSpec(syntax, paths, reference), draws=200)
    align(..., bootstrap=boot)                       # adds CI columns to scores
    profiles(long, wide, instruments)                # per-model questionnaire profiles
"""

from vaar.lazy import lazy_exports

EXPORTS = {
    "AlignmentResult": "result",
    "BootstrapResult": "bootstrap",
    "FORMULA_NOTE": "result",
    "LOGLOSS_FLOOR": "scores",
    "Profiles": "profile",
    "Reference": "reference",
    "RefitSpec": "bootstrap",
    "StructuralPath": "reference",
    "align": "result",
    "bootstrap_vaar": "bootstrap",
    "load_reference": "reference",
    "path_evidence": "scores",
    "profiles": "profile",
    "reference_from_group": "reference",
    "refit_executor": "executors",
    "resample": "bootstrap",
    "resolve_level": "result",
    "scores_from_evidence": "scores",
    "vaar_scores": "scores",
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
