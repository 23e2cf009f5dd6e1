"""The measurement-invariance ladder as data, defined here once: its levels (what each one
constrains, which parameters a partial search may free there, which SRMR cut-off judges it),
the decision rules (which changes in fit make a level fail) with their cut-offs, and the
vocabularies of fit_ladder's options.

vaar.sem.ladder hands the levels and the rule to R (r/ladder.R) as tables (`r_tables`), the
reproduction bundle writes the same tables next to analysis.R, the study config and the CLI
take their choices from the types below, and the report its descriptions of the rules. A leaf
module (of vaar it imports only vaar.errors), so the study config reads it without vaar.sem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from vaar.errors import VaarError

if TYPE_CHECKING:  # no pandas at import: the study config and the CLI read the types
    import pandas as pd

Estimator = Literal["MLR", "ML", "WLSMV"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)
ORDINAL_ESTIMATORS = ("WLSMV",)  # ordinal data: WLSMV with the theta parameterization
CONTINUOUS_ESTIMATORS = tuple(e for e in ESTIMATORS if e not in ORDINAL_ESTIMATORS)
Missing = Literal["fiml", "listwise"]  # continuous data; ordinal data use pairwise deletion
MISSING: tuple[str, ...] = get_args(Missing)
Degenerate = Literal["drop_items", "exclude_group", "fail"]  # see vaar.sem.degenerate
DEGENERATE: tuple[str, ...] = get_args(Degenerate)
# The information matrix of a FIML fit (missing = "ml": continuous data with missing answers),
# for its standard errors and scaled (robust) tests. "h1": the observed information computed
# analytically from the unrestricted (h1) model, about listwise deletion's time; "lavaan":
# lavaan's own default, the observed information from a numerical Hessian (5-15x slower on
# vaar's models, docs/sem.md). Complete-data and ordinal fits keep lavaan's defaults always.
Information = Literal["h1", "lavaan"]
INFORMATION: tuple[str, ...] = get_args(Information)
FIML_INFORMATION: dict[str, dict[str, str]] = {  # the lavaan options of each choice
    "h1": {"information": "observed", "observed.information": "h1"},
    "lavaan": {},
}
INFORMATION_HELP = (
    "FIML's information matrix for standard errors and scaled tests: h1 (observed, "
    "analytic from the unrestricted model; the default, about listwise's time) or lavaan "
    "(lavaan's own default, a numerical Hessian: much slower)"
)


def fiml_options(information: str) -> dict[str, str]:
    """The lavaan options a FIML fit gets for an `information` choice; VaarError if unknown."""
    if information not in FIML_INFORMATION:
        known = ", ".join(INFORMATION)
        raise VaarError(f"unknown information choice {information!r} (known: {known})")
    return dict(FIML_INFORMATION[information])


@dataclass(frozen=True)
class Level:
    """One rung of the ladder. `constrains` is its parameter class: the lavaan group.equal
    keyword it adds to the levels below it ("" for configural). `frees` are the lavaan
    operators of the parameters a partial-invariance search may free at this level
    (`ordinal_frees` in the ordinal ladder, when they differ). `srmr` names the cut-off that
    judges its change in SRMR (Chen 2007: a looser one for loadings)."""

    name: str
    constrains: str
    frees: tuple[str, ...]
    srmr: str
    ordinal_only: bool = False
    ordinal_frees: tuple[str, ...] | None = None


# In ladder order; each level keeps the constraints of every level before it.
LEVELS = (
    Level("configural", "", (), "srmr_other"),
    Level("thresholds", "thresholds", ("|",), "srmr_other", ordinal_only=True),  # Wu & Estabrook
    Level("metric", "loadings", ("=~",), "srmr_loadings"),
    # Wu & Estabrook (2016) ordinal scalar models fix intercepts rather than equate them: the
    # score tests see the thresholds, whose release frees that item's location
    Level("scalar", "intercepts", ("~1",), "srmr_other", ordinal_frees=("~1", "|")),
    Level("strict", "residuals", ("~~",), "srmr_other"),
)
# The test of equal structural paths, on top of the highest level that holds.
EQUAL_PATHS = Level("equal_paths", "regressions", ("~",), "srmr_other")
PARTIAL = "_partial"  # a level with some of its constraints freed: metric_partial, ...

LEVEL_NAMES: tuple[str, ...] = tuple(level.name for level in LEVELS)
BASELINE = LEVEL_NAMES[0]  # configural: fitted always, and the ladder's first comparison base
# The levels a study or a user asks for (ordinal ladders add thresholds themselves).
StudyLevel = Literal[tuple(lv.name for lv in LEVELS if not lv.ordinal_only)]
STUDY_LEVELS: tuple[str, ...] = get_args(StudyLevel)
_BY_NAME = {level.name: level for level in (*LEVELS, EQUAL_PATHS)}


def level_of(name: str) -> Level:
    """The level a fit's name belongs to: `metric` and `metric_partial` are both metric. The
    one place a level's name is read: R gets what it needs as data (`r_tables`)."""
    level = _BY_NAME.get(name)
    if level is None and name.endswith(PARTIAL):
        base = _BY_NAME.get(name.removesuffix(PARTIAL))
        level = base if base in LEVELS[1:] else None  # configural has nothing to free
    if level is None:
        raise VaarError(f"unknown invariance level {name!r} (known: {', '.join(LEVEL_NAMES)})")
    return level


def parameter_class(name: str) -> str:
    """What a level (or its partial variant) constrains: loadings, intercepts, ..."""
    return level_of(name).constrains


def levels_to_fit(requested, ordinal: bool) -> list[str]:
    """The levels to fit, in ladder order: configural always, and for ordinal data the
    thresholds before any loadings (Wu & Estabrook 2016). VaarError for an unknown name."""
    known = [lv.name for lv in LEVELS if ordinal or not lv.ordinal_only]
    requested = list(requested) if requested else list(STUDY_LEVELS)
    unknown = [lv for lv in requested if lv not in known]
    if unknown:
        raise VaarError(f"unknown invariance level(s) {unknown} (known: {', '.join(known)})")
    wanted = {BASELINE, *requested}
    if ordinal:  # the ordinal-only levels below the highest one asked for: thresholds
        top = max(LEVEL_NAMES.index(name) for name in wanted)
        wanted |= {lv.name for lv in LEVELS[:top] if lv.ordinal_only}
    return [name for name in known if name in wanted]


@dataclass(frozen=True)
class Criterion:
    """One condition of a rule on the comparison of a level with the one below it.
    `breach`: "drop" (statistic <= -cut-off), "rise" (statistic >= cut-off) or "below"
    (statistic < cut-off); `cutoff` names a threshold, "srmr" being the level's own SRMR
    cut-off (Level.srmr). `need`: "all" criteria must be breached, and of the "any" criteria
    (if a rule has some) at least one."""

    statistic: str
    label: str
    breach: Literal["drop", "rise", "below"]
    cutoff: str
    need: Literal["all", "any"]


@dataclass(frozen=True)
class Rule:
    """A decision rule: a level fails when its criteria are met; it is undecidable when a
    statistic an "all" criterion needs is not available."""

    name: str
    description: str  # for people (the report)
    criteria: tuple[Criterion, ...]


_CFI_DROP = Criterion("d_cfi", "dCFI", "drop", "cfi", "all")
RULES = {
    rule.name: rule
    for rule in (
        Rule(
            "chen2007",
            "Chen (2007): a level fails when CFI drops by at least the cfi threshold and "
            "RMSEA rises by at least the rmsea threshold or SRMR by at least its threshold "
            "(loadings for metric, other for later levels)",
            (
                _CFI_DROP,
                Criterion("d_rmsea", "dRMSEA", "rise", "rmsea", "any"),
                Criterion("d_srmr", "dSRMR", "rise", "srmr", "any"),
            ),
        ),
        Rule(
            "cheung_rensvold2002",
            "Cheung & Rensvold (2002): a level fails when CFI drops by at least the cfi threshold",
            (_CFI_DROP,),
        ),
        Rule(
            "lrt",
            "a level fails when the scaled likelihood-ratio test against the previous level "
            "is significant at alpha",
            (Criterion("lrt_pvalue", "LRT p", "below", "alpha", "all"),),
        ),
    )
}
RuleName = Literal[tuple(RULES)]
DEFAULT_RULE = "chen2007"
# Cut-offs: Chen (2007) for the deltas (SRMR: loadings vs intercepts/residuals), alpha for LRTs.
DEFAULT_THRESHOLDS = {
    "cfi": 0.010,
    "rmsea": 0.015,
    "srmr_loadings": 0.030,
    "srmr_other": 0.010,
    "alpha": 0.05,
}


def rule(name: str) -> Rule:
    if name not in RULES:
        raise VaarError(f"unknown decision rule {name!r} (known: {', '.join(RULES)})")
    return RULES[name]


def thresholds(overrides: dict | None) -> dict[str, float]:
    """The default cut-offs with `overrides` (positive numbers, known names) applied."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(DEFAULT_THRESHOLDS))
    if unknown:
        known = ", ".join(DEFAULT_THRESHOLDS)
        raise VaarError(f"unknown threshold(s) {unknown} (known: {known})")
    for key, value in overrides.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise VaarError(f"threshold {key} must be a positive number, got {value!r}")
    return {k: float(overrides.get(k, v)) for k, v in DEFAULT_THRESHOLDS.items()}


def r_tables(
    levels: list[str], rule_name: str, *, ordinal: bool, equal_paths: bool
) -> dict[str, pd.DataFrame]:
    """What r/ladder.R knows about the ladder, as two tables (columns of text; lists joined
    by commas): `ladder`, one row per fit in order (level, its partial variant's name, the
    cumulative group.equal, the operators a partial search may free, the SRMR cut-off's
    name, and kind "level", or "paths" for the equal-paths test, whose group.equal is added
    to the highest level that holds), and `criteria`, the rule's criteria."""
    import pandas as pd

    rungs = [lv for lv in LEVELS if ordinal or not lv.ordinal_only]
    rows = []
    for name in levels:
        level = level_of(name)
        equal = [lv.constrains for lv in rungs[: rungs.index(level) + 1] if lv.constrains]
        frees = level.ordinal_frees if ordinal and level.ordinal_frees else level.frees
        partial = level.name + PARTIAL if level.constrains else ""
        rows.append(_row(level, partial, equal, frees, "level"))
    if equal_paths:
        rows.append(_row(EQUAL_PATHS, "", [EQUAL_PATHS.constrains], EQUAL_PATHS.frees, "paths"))
    criteria = [
        {"statistic": c.statistic, "label": c.label, "breach": c.breach, "cutoff": c.cutoff,
         "need": c.need}
        for c in rule(rule_name).criteria
    ]  # fmt: skip
    return {"ladder": pd.DataFrame(rows), "criteria": pd.DataFrame(criteria)}


def _row(level: Level, partial: str, equal: list[str], frees, kind: str) -> dict:
    return {
        "level": level.name,
        "partial": partial,
        "equal": ",".join(equal),
        "frees": ",".join(frees),
        "srmr": level.srmr,
        "kind": kind,
    }
