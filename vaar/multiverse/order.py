"""Does the order of the instrument blocks change measurement, or the structural paths?

Within each model, its sessions of every variant are pooled and grouped by the variant's block
order; vaar.sem.fit_ladder fits the invariance ladder across those groups (the other factors of
the grid are balanced across orders in a full grid) and, at the highest level that holds, the
likelihood-ratio test of equal structural paths across orders (`equal_paths`, scaled LRT as in
the study's own ladder). Per-order path estimates at that level are kept for the report.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from vaar.errors import VaarError

BLOCK_ORDER = "block_order"  # the grid factor (vaar.multiverse's factor name) and group column
RULE = (
    "block order: within each model, the invariance ladder with the block-order level as the "
    "group (the study's levels, estimator, missing-data method and rule); measurement changes "
    "with order when a level below the highest tried fails; the paths differ by order when the "
    "scaled LRT of equal structural paths at the highest level that holds has p < alpha. When "
    "lavaan's LRT gives no p-value (a negative scaled difference), the per-path Wald test of "
    "equal estimates across orders decides (Cochran's Q = sum w (b - b_w)^2, w = 1 / SE^2, "
    "df = orders - 1; groups taken as independent, exact at the configural level), with "
    "Bonferroni over the paths. Both are reported"
)


def order_invariance(
    scored: pd.DataFrame, raw: pd.DataFrame, syntax: str, factors: dict, analysis, echo=print
) -> dict:
    """{"summary": one row per model, "paths": per model x order x path estimates, "rule"};
    empty when the grid does not vary block order. `scored`/`raw`: every variant's sessions
    (column `variant`), reverse keys applied / as answered."""
    from vaar.data import VARIANT
    from vaar.sem import fit_ladder

    orders = {v: levels.get(BLOCK_ORDER) for v, levels in factors.items()}
    if len(set(orders.values())) < 2:
        return {}
    summary, paths = [], []
    for model in dict.fromkeys(scored["model"]):
        mine = scored["model"] == model
        data = scored[mine].assign(**{BLOCK_ORDER: scored.loc[mine, VARIANT].map(orders)})
        answers = raw[raw["model"] == model].assign(**{BLOCK_ORDER: data[BLOCK_ORDER].to_numpy()})
        row = {"model": model, "orders": ", ".join(dict.fromkeys(data[BLOCK_ORDER].astype(str)))}
        try:
            sem = fit_ladder(
                data, syntax, BLOCK_ORDER, equal_paths=True, answers=answers,
                **analysis.ladder_options(),
            )  # fmt: skip
        except VaarError as exc:
            echo(f"[vaar] block order, {model}: {exc}")
            summary.append(
                {**row, "error": str(exc), "finding": f"Block order: not tested ({exc})."}
            )
            continue
        level = sem.highest_level
        mine = [
            {
                "model": model, "order": r["group"], "path": f"{r['lhs']} ~ {r['rhs']}",
                "level": level, **{k: r.get(k) for k in ("est", "se", "pvalue", "ci_lower",
                                                         "ci_upper")},
            }
            for r in (sem.paths(level).to_dict("records") if level else [])
        ]  # fmt: skip
        wald = wald_tests(pd.DataFrame(mine))
        paths += [dict(r, **wald.get(r["path"], {})) for r in mine]
        row.update(_judged(sem, analysis.alpha, wald))
        summary.append(row)
    return {"summary": pd.DataFrame(summary), "paths": pd.DataFrame(paths), "rule": RULE}


def wald_tests(rows: pd.DataFrame) -> dict[str, dict]:
    """Per path: Cochran's Q of its per-order estimates (RULE), {path: {wald_q, wald_df,
    wald_pvalue}}; paths with fewer than two usable orders are left out."""
    from scipy.stats import chi2

    out = {}
    for path, group in rows.groupby("path", sort=False) if len(rows) else []:
        b, se = group["est"].to_numpy(float), group["se"].to_numpy(float)
        ok = np.isfinite(b) & np.isfinite(se) & (se > 0)
        if ok.sum() < 2:
            continue
        w = 1 / se[ok] ** 2
        q = float((w * (b[ok] - (w * b[ok]).sum() / w.sum()) ** 2).sum())
        df = int(ok.sum() - 1)
        out[path] = {"wald_q": q, "wald_df": df, "wald_pvalue": float(chi2.sf(q, df))}
    return out


def _judged(sem, alpha: float, wald: dict) -> dict:
    """What the ladder across orders says: the highest level, the first level that failed and
    why, the equal-paths LRT, and one sentence for the verdict."""
    tried = list(sem.decision.get("levels_tested") or [])
    highest = sem.highest_level
    excluded = sem.diagnostics.get("excluded_groups") or []
    comparisons = sem.comparisons
    failed = comparisons[comparisons["holds"].ne(True)] if len(comparisons) else []
    first = failed.iloc[0].to_dict() if len(failed) else {}
    equal = sem.equal_paths or {}
    p = equal.get("lrt_pvalue")
    p = float(p) if isinstance(p, int | float) and math.isfinite(p) else None
    invariant = bool(highest) and bool(tried) and highest == tried[-1]
    differ, test = (None, None) if p is None else (p < alpha, "LRT")
    wald_p = min((w["wald_pvalue"] for w in wald.values()), default=None)
    if differ is None and wald_p is not None:
        differ, test = wald_p < alpha / len(wald), "Wald"
        p = min(1.0, wald_p * len(wald))
    if not highest:
        finding = "Block order: the ladder across orders could not be judged."
    else:
        finding = (
            f"Block order {'does not change' if invariant else 'changes'} measurement "
            f"(invariance across orders holds up to {highest}"
            + (f"; {first.get('to')} fails: {first.get('reason')}" if first else "")
            + ")"
        )
        if differ is not None:
            verb = "differ" if differ else "do not differ"
            how = "LRT" if test == "LRT" else "per-path Wald, Bonferroni"
            finding += f"; the structural paths {verb} by order ({how} p = {p:.3g})"
        finding += "."
    if excluded:
        finding += " Orders left out: " + "; ".join(
            f"{e['group']}: {e['reason']}" for e in excluded
        )
    return {
        "highest": highest,
        "levels_tested": ", ".join(str(t) for t in tried),
        "measurement_invariant": invariant if highest else None,
        "failed_level": first.get("to"),
        "failed_reason": first.get("reason"),
        "paths_chisq_diff": equal.get("chisq_diff"),
        "paths_df_diff": equal.get("df_diff"),
        "paths_lrt_pvalue": equal.get("lrt_pvalue"),
        "paths_test": test,
        "paths_pvalue": p,
        "paths_differ": differ,
        "excluded_orders": "; ".join(f"{e['group']}: {e['reason']}" for e in excluded),
        "finding": finding,
    }
