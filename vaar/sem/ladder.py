"""The public fitting API: check the input, apply the degenerate-group strategy, run the R
ladder (r/ladder.R: vaar_fit_ladder, with the levels and the rule of vaar.invariance as
tables) and wrap its plain-data result in a SemResult."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from vaar import invariance
from vaar.errors import VaarError
from vaar.files import read_text
from vaar.sem import bridge
from vaar.sem import syntax as lav_syntax
from vaar.sem.degenerate import clean
from vaar.sem.grammar import check_model, is_parameter_name
from vaar.sem.result import SemResult


def parse_model(syntax: str) -> dict:
    """lavaan's own parse of a model that passed the allow-list (vaar.sem.grammar, in Python,
    before R): {"ov": observed names, "lv": latent names, "syntax": the checked text, as R
    gets it}. ModelSyntaxError when the allow-list refuses it, VaarError with lavaan's message
    when lavaan does."""
    checked = check_model(syntax)
    parsed = bridge.call("vaar_parse", checked)
    if parsed.get("error"):
        raise VaarError(f"invalid lavaan model syntax: {_first_line(parsed['error'])}")
    return {"ov": _names(parsed.get("ov")), "lv": _names(parsed.get("lv")), "syntax": checked}


def observed_variables(syntax: str) -> list[str]:
    """The observed variables of a lavaan model, by lavaan's own parser."""
    return parse_model(syntax)["ov"]


def _names(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in (value if isinstance(value, list) else [value])]


def _first_line(message: str) -> str:
    text = message.strip().removeprefix("lavaan ERROR:").strip()
    return text.splitlines()[0] if text else "lavaan could not parse the model"


def read_model_file(path: str | Path) -> str:
    """A lavaan model file the user named (`--model`): UTF-8 text, not empty, through the
    allow-list; all in Python, before any data is read or R started."""
    try:
        syntax = read_text(path, "lavaan model file")
    except VaarError as exc:
        raise VaarError(f"--model {exc}") from None
    if not syntax.strip():
        raise VaarError(f"--model {path}: the file is empty (expected lavaan model syntax)")
    check_model(syntax, source=f"--model {path}")
    return syntax


def check_groups(data: pd.DataFrame, group: str, *, at_least: int = 1) -> None:
    """The group column is there, never empty, and holds `at_least` groups (no R needed)."""
    if not isinstance(data, pd.DataFrame):
        raise VaarError("data must be a pandas DataFrame")
    if group not in data.columns:
        raise VaarError(f"no group column {group!r} (columns: {', '.join(map(str, data.columns))})")
    if data[group].isna().any():
        raise VaarError(f"group column {group!r} has empty values")
    groups = data[group].astype(str).unique()
    if len(groups) < at_least:
        raise VaarError(
            f"group column {group!r} holds {len(groups)} group(s) ({', '.join(groups[:3])}): "
            f"comparing measurement across groups needs at least {at_least}"
        )


def _model_data(data: pd.DataFrame, group: str, observed: list[str]) -> pd.DataFrame:
    check_groups(data, group)
    missing = [v for v in observed if v not in data.columns]
    if missing:
        raise VaarError(f"the model names variables missing from the data: {', '.join(missing)}")
    frame = data[[group, *observed]].copy()
    frame[group] = frame[group].astype(str)
    for column in observed:
        bad = first_bad_number(frame[column])
        if bad:
            row, shown, what = bad
            raise VaarError(f"column {column}: {what} value {shown} in row {row + 1}")
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame.reset_index(drop=True)


def first_bad_number(values: pd.Series) -> tuple[int, str, str] | None:
    """The first cell of a model variable that is not a finite number (empty cells are missing
    answers): its 0-based position, the value as shown to a user and what is wrong with it
    ("non-numeric" or "infinite"); None when every cell is fine. The ladder and the service's
    upload checks both use it."""
    converted = pd.to_numeric(values, errors="coerce")
    bad = (values.notna() & converted.isna()) | np.isinf(converted)
    if not bad.any():
        return None
    position = int(bad.to_numpy().nonzero()[0][0])
    value = values.iloc[position]
    shown = repr(value) if isinstance(value, str) else f"{float(value):g}"
    return position, shown, "infinite" if np.isinf(converted.iloc[position]) else "non-numeric"


def fit_ladder(
    data: pd.DataFrame,
    syntax: str,
    group: str,
    *,
    estimator: str | None = None,
    ordered: bool | list[str] = False,
    levels: list[str] | None = None,
    degenerate: str = invariance.DEGENERATE[0],
    rule: str = invariance.DEFAULT_RULE,
    thresholds: dict | None = None,
    partial: bool = False,
    max_free: int = 10,
    equal_paths: bool = False,
    bootstrap: int = 0,
    ncpus: int | None = None,
    seed: int = 1,
    missing: str = invariance.MISSING[0],
    information: str = invariance.INFORMATION[0],
    min_groups: int = 1,
    answers: pd.DataFrame | None = None,
    freed: list[str] | None = None,
) -> SemResult:
    """Fit the invariance ladder of a multi-group model with lavaan.

    `estimator`: MLR for continuous data, WLSMV for ordinal data unless given. `ordered`:
    False (continuous, ML/MLR with FIML when data are missing), True (every observed variable
    ordinal, WLSMV/theta) or a list of ordinal variables. `levels` are the constrained levels
    to try (configural is always fitted; vaar.invariance). `rule`: one of
    invariance.RULES; `thresholds` override its cut-offs. `equal_paths`: also test equal
    structural paths at the highest level that holds. `missing`: "fiml" (continuous data, when
    anything is missing) or "listwise" (complete sessions only; far faster with many items).
    Ordinal data always use pairwise deletion. `information`: the information matrix of a FIML
    fit (invariance.FIML_INFORMATION: "h1", vaar's default, or "lavaan", lavaan's own, much
    slower); complete-data and ordinal fits keep lavaan's defaults. `min_groups`: the groups
    the data must hold (a user's model asks for 2: one group's ladder would report "strict"
    invariance, having compared nothing). `answers`: the answers as given when `data` holds
    them scored (reverse keys applied), only to word why a group is excluded ("answered 5 to
    every item").
    `freed`: lavaan parameter names (group.partial, e.g. "x1~1") free from the start, so every
    constrained level is fitted as its partial variant: the refit of a partial level such as
    scalar_partial (fit `levels=["scalar"]` with the freed parameters of the original)."""
    check_groups(data, group, at_least=min_groups)  # before R parses anything
    parsed = parse_model(syntax)
    syntax = parsed["syntax"]  # from here on the checked text: what R gets and the bundle holds
    frame = _model_data(data, group, parsed["ov"])
    ordinal_vars = _ordered(ordered, parsed["ov"])
    ordinal = bool(ordinal_vars)
    allowed = invariance.ORDINAL_ESTIMATORS if ordinal else invariance.CONTINUOUS_ESTIMATORS
    estimator = estimator or allowed[0]
    if estimator not in allowed:
        kind = "ordinal" if ordinal else "continuous"
        raise VaarError(f"estimator {estimator!r} does not fit {kind} data (use {allowed})")
    if missing not in invariance.MISSING:
        known = ", ".join(invariance.MISSING)
        raise VaarError(f"unknown missing-data method {missing!r} (known: {known})")
    invariance.fiml_options(information)  # a known choice, or VaarError
    invariance.rule(rule)  # a known rule, or VaarError
    level_list = invariance.levels_to_fit(levels, ordinal)
    cut_offs = invariance.thresholds(thresholds)
    if bootstrap < 0 or max_free < 1:
        raise VaarError("bootstrap must be >= 0 and max_free >= 1")
    freed = list(freed or [])
    bad = [name for name in freed if not is_parameter_name(name)]
    if bad:
        raise VaarError(f"freed: {bad[0]!r} is not a lavaan parameter name (such as x1~1)")

    cleaned = clean(
        frame, group, parsed["ov"], ordered=ordinal, strategy=degenerate,
        missing="pairwise" if ordinal else missing, answers=answers,
    )  # fmt: skip
    dropped = {d["item"] for d in cleaned.dropped_items}
    pruned = lav_syntax.drop_variables(syntax, dropped) if dropped else None
    fitted_syntax = pruned.syntax if pruned else syntax
    if pruned:
        parsed = parse_model(fitted_syntax) if fitted_syntax.strip() else {"ov": []}
        if not parsed["ov"]:
            raise VaarError(
                "no item is left to fit after dropping degenerate items: "
                + "; ".join(f"{d['item']} ({d['reason']})" for d in cleaned.dropped_items)
            )
    used = cleaned.data[[group, *parsed["ov"]]]
    ordinal_vars = [v for v in ordinal_vars if v in parsed["ov"]]

    args = {
        "group": group,
        "estimator": estimator,
        "ordered": ordinal_vars,
        "levels": level_list,
        "rule": rule,
        "thresholds": cut_offs,
        "partial": bool(partial),
        "max_free": int(max_free),
        "equal_paths": bool(equal_paths),
        "bootstrap": int(bootstrap),
        "ncpus": int(ncpus or r_cpus()),
        "seed": int(seed),
        "missing": missing,
        "information": information,
        "freed": freed,
    }
    raw = bridge.call("vaar_fit_ladder", used, fitted_syntax, **r_arguments(args))
    diagnostics = {
        "dropped_items": cleaned.dropped_items,
        "excluded_groups": cleaned.excluded_groups,
        "dropped_factors": pruned.dropped_factors if pruned else [],
        "not_estimable_paths": pruned.not_estimable_paths if pruned else [],
        "degenerate_strategy": degenerate,
    }
    result = SemResult.from_r(raw, diagnostics)
    matrices = result.diagnostics.get("information")
    if matrices and result.diagnostics.get("missing") == "ml":  # the choice only FIML makes
        matrices["choice"] = information
        matrices["text"] += f" (FIML, information = {information!r})"
    result.syntax = fitted_syntax
    result.call = {"function": "vaar_fit_ladder", "syntax": fitted_syntax, "args": args}
    result.data = used
    result.estimator = estimator
    return result


def _ordered(ordered, observed: list[str]) -> list[str]:
    if ordered is True:
        return list(observed)
    if not ordered:
        return []
    unknown = [v for v in ordered if v not in observed]
    if unknown:
        raise VaarError(f"ordered names variables not in the model: {', '.join(unknown)}")
    return list(ordered)


def r_arguments(args: dict) -> dict:
    """The arguments of r/ladder.R's vaar_fit_ladder for a call's `args` (what fit_ladder
    records in SemResult.call): the levels, the equal-paths test and the rule become the
    tables of vaar.invariance. The bridge and the reproduction bundle both use this."""
    out = {k: v for k, v in args.items() if k not in ("levels", "equal_paths", "information")}
    out.update(
        invariance.r_tables(
            list(args["levels"]), args["rule"], ordinal=bool(args["ordered"]),
            equal_paths=bool(args["equal_paths"]),
        )
    )  # fmt: skip
    # lavaan's options for FIML as "name=value" texts (r/ladder.R: vaar_setup applies them)
    fiml = invariance.fiml_options(args["information"])
    out["fiml_options"] = [f"{name}={value}" for name, value in fiml.items()]
    out["ordered"] = list(args["ordered"])
    out["thresholds"] = dict(args["thresholds"])
    out["freed"] = list(args.get("freed", []))
    return out


def r_cpus() -> int:
    """How many forked R processes fit the ladder's levels side by side: $VAAR_R_CPUS when set
    (the service gives each of its workers a share of the cores), else every core."""
    value = os.environ.get("VAAR_R_CPUS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise VaarError(f"VAAR_R_CPUS must be a whole number >= 1, got {value!r}")
        return int(value)
    return max(1, os.cpu_count() or 1)
