"""The report's multiverse section, from the `multiverse` part of the estimates document: the
model x variant heat map of VAAR, the verdicts, the per-path flip table, the stability summary
and the block-order ladder. Formats and draws only; the numbers come from vaar.multiverse."""

from __future__ import annotations

from vaar.report import plots

VAAR_COLUMNS = [
    ("model", "Model"),
    ("variant", "Variant"),
    ("vaar_soft", "VAAR soft"),
    ("vaar_soft_ci", "95% CI"),
    ("vaar_hard", "VAAR hard"),
    ("vaar_logloss", "VAAR log-loss"),
    ("note", "Note"),
]
FLIP_COLUMNS = [
    ("model", "Model"),
    ("path", "Path"),
    ("majority", "Majority conclusion"),
    ("n_variants", "Estimable variants"),
    ("n_changes", "Changes"),
    ("change_share", "Change share"),
    ("n_flips", "Sign flips"),
    ("flip_share", "Flip share"),
    ("sign_change_share", "Estimate sign-change share"),
    ("changed_variants", "Variants that differ (their conclusion)"),
    ("not_estimable", "Not estimable in"),
]
STABILITY_COLUMNS = [
    ("model", "Model"),
    ("n_estimable", "Estimable variants"),
    ("vaar_soft_mean", "Mean VAAR soft"),
    ("vaar_soft_min", "Min"),
    ("vaar_soft_max", "Max"),
    ("vaar_soft_range", "Range"),
    ("vaar_soft_sd", "SD"),
    ("max_change_share", "Largest change share"),
    ("max_flip_share", "Largest flip share"),
    ("icc", "Profile ICC(2,1)"),
    ("icc_consistency", "Profile ICC(3,1)"),
    ("n_targets", "Items"),
]
ORDER_COLUMNS = [
    ("model", "Model"),
    ("orders", "Block orders"),
    ("highest", "Invariance holds up to"),
    ("measurement_invariant", "Measurement unchanged"),
    ("failed_level", "First level that fails"),
    ("failed_reason", "Why"),
    ("paths_chisq_diff", "Δχ² (equal paths)"),
    ("paths_df_diff", "Δdf"),
    ("paths_lrt_pvalue", "p (LRT)"),
    ("paths_test", "Paths decided by"),
    ("paths_pvalue", "p (paths)"),
    ("paths_differ", "Paths differ"),
    ("excluded_orders", "Orders left out"),
    ("error", "Error"),
]
ORDER_PATH_COLUMNS = [
    ("model", "Model"),
    ("order", "Block order"),
    ("path", "Path"),
    ("level", "Level"),
    ("est", "Estimate"),
    ("se", "SE"),
    ("pvalue", "p"),
    ("ci", "95% CI"),
    ("wald_q", "Wald Q (equal across orders)"),
    ("wald_df", "df"),
    ("wald_pvalue", "p (Wald)"),
]


def _present(columns, rows):
    return [c for c in columns if any(r.get(c[0]) not in (None, "") for r in rows)]


def multiverse_view(doc: dict, ci) -> dict | None:
    """What the template's multiverse section shows; None for a study of one protocol. `ci`
    formats an interval from a row (vaar.report.html._ci)."""
    mv = doc.get("multiverse")
    if not mv:
        return None
    models = list(dict.fromkeys(r["model"] for r in mv["vaar"]))
    marked = {(v["model"], d) for v in mv["verdicts"] for d in v.get("deviating_variants") or []}
    cells = [
        {
            "row": r["model"], "column": r["variant"], "value": r.get("vaar_soft"),
            "lower": r.get("vaar_soft_ci_lower"), "upper": r.get("vaar_soft_ci_upper"),
        }
        for r in mv["vaar"]
    ]  # fmt: skip
    vaar = [
        dict(r, vaar_soft_ci=ci(r, "vaar_soft_ci_lower", "vaar_soft_ci_upper")) for r in mv["vaar"]
    ]
    bootstrapped = any(r.get("vaar_soft_ci_lower") is not None for r in mv["vaar"])
    grid = [{"variant": v, **mv["factors"][v]} for v in mv["variants"]]
    factor_columns = [(f, f.replace("_", " ")) for f in mv["varying"]]
    order_paths = [dict(r, ci=ci(r, "ci_lower", "ci_upper")) for r in mv["order_paths"]]
    return {
        "mv": mv,
        "heat_map": plots.heat_map(
            cells, models, mv["variants"], "VAAR soft per model and protocol variant", marked
        ),
        "bootstrapped": bootstrapped,
        "grid": grid,
        "grid_columns": [("variant", "Variant"), *factor_columns],
        "vaar": vaar,
        "vaar_columns": VAAR_COLUMNS[:2]
        + factor_columns
        + [c for c in _present(VAAR_COLUMNS[2:], vaar) if c[0] != "vaar_soft_ci" or bootstrapped],
        "flip_columns": FLIP_COLUMNS,
        "stability_columns": STABILITY_COLUMNS,
        "order_columns": _present(ORDER_COLUMNS, mv["order"]),
        "order_path_columns": ORDER_PATH_COLUMNS,
        "order_paths": order_paths,
    }
