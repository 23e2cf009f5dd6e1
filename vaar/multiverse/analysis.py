"""Is a model's value-action alignment a property of the model or of the protocol?

Given each protocol variant's own analysis (VAAR and sign evidence from vaar.alignment, fitted by
the one pipeline, `vaar.pipeline.analyze_multiverse`), this module compares the variants per
model. It fits nothing itself except the block-order ladder (vaar.multiverse.order). Every rule
is defined here once and stated in the output (RULES; docs/vaar.md, "Multiverse runs"):

- a path's **conclusion** in a variant: `agrees` (the human sign and p < alpha), `reverses` (the
  opposite sign and p < alpha), `undecided` (p >= alpha), `not estimable` (no usable estimate);
- the model's **majority conclusion** per path: the conclusion most of its estimable variants
  reach; a tie goes to the base variant's (the grid's first), else to the order of CONCLUSIONS;
- a **change**: an estimable variant whose conclusion for a path differs from the majority;
  a **flip**: a variant that decides a path's sign opposite to the sign most deciding variants
  give it (agrees <-> reverses); losing significance is a change, not a flip;
- the model's conclusion in a variant is the tuple of its path conclusions; the verdict counts
  the variants that reach the majority tuple and names the factor level that sets the others
  apart, when one does; a model is **stable** when no path flips;
- **ICC(2,1)** (absolute agreement) of the model's profile across variants: targets are its
  mean scored answers per item on a 0-1 scale (POMP), raters are the variants.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd

from vaar.multiverse.icc import icc
from vaar.multiverse.result import MultiverseResult

AGREES, UNDECIDED, REVERSES, NOT_ESTIMABLE = "agrees", "undecided", "reverses", "not estimable"
CONCLUSIONS = (AGREES, UNDECIDED, REVERSES)  # also the tie-break order after the base variant
RULES = {
    "conclusion": "per path and variant: 'agrees' = the human sign with p < alpha, 'reverses' = "
    "the opposite sign with p < alpha, 'undecided' = p >= alpha, 'not estimable' = no usable "
    "estimate (degenerate answers, no convergence)",
    "majority": "per model and path: the conclusion most estimable variants reach; a tie goes "
    "to the base variant (the grid's first) if it is tied, else agrees > undecided > reverses",
    "change": "a variant whose conclusion for a path differs from the model's majority; change "
    "share = changes / estimable variants",
    "flip": "a variant that decides a path's sign (p < alpha) opposite to the sign most of the "
    "deciding variants give it (a tie: the base variant's, else the human sign); flip share = "
    "flips / estimable variants; sign-change share: the point estimate's sign differs from the "
    "sign most variants' estimates have",
    "verdict": "'stable across all N' = every estimable variant (at least 2) reaches the model's "
    "majority conclusion on every path; otherwise the verdict counts the variants that do and "
    "names the factor level shared by exactly the others (else the level they all share, else "
    "their names), with 'flips' when a path flips and 'changes' when only significance moves. "
    "stable (yes/no) = at least 2 estimable variants and no path flips",
    "icc": "ICC(2,1), two-way random effects, absolute agreement, single rater (Shrout & Fleiss "
    "1979): targets = the model's mean scored answer per item (POMP 0-1), raters = variants; "
    "icc_consistency = ICC(3,1). Low when the items' means hardly differ (no profile to agree on)",
    "vaar_sd": "sample SD (n - 1) of VAAR soft over the variants where the model is estimable",
}
HEADLINES = {
    (AGREES,): "alignment holds",
    (REVERSES,): "reversed alignment holds",
    (UNDECIDED,): "no path is decided",
}


def varying_factors(factors: dict[str, dict[str, str]]) -> list[str]:
    """The factors whose level differs between variants (the ones to analyse), in first-seen
    order."""
    names = list(dict.fromkeys(f for levels in factors.values() for f in levels))
    return [f for f in names if len({levels.get(f) for levels in factors.values()}) > 1]


def conclusion(row) -> str:
    """One path's conclusion from its sign evidence row (vaar.alignment.path_evidence)."""
    if not math.isfinite(row["evidence"]):
        return NOT_ESTIMABLE
    if row["supports"]:
        return AGREES
    if np.sign(row["z"]) == -row["expected_sign"] and row["pvalue"] < row["alpha"]:
        return REVERSES
    return UNDECIDED


def variant_tables(alignments: dict, failures: dict[str, str], factors: dict, varying: list):
    """(VAAR per model x variant, path conclusions per model x variant x path). A variant whose
    whole analysis failed (`failures`: variant -> reason) lists every model as not estimable."""
    scores, paths = [], []
    models = list(dict.fromkeys(m for a in alignments.values() for m in a.scores["model"]))
    for variant in factors:
        levels = {f: factors[variant].get(f) for f in varying}
        alignment = alignments.get(variant)
        if alignment is None:
            why = f"the variant's analysis failed: {failures.get(variant, 'no result')}"
            scores += [{"model": m, "variant": variant, **levels, "note": why} for m in models]
            continue
        for row in alignment.scores.to_dict("records"):
            scores.append({"model": row["model"], "variant": variant, **levels, **row})
        evidence = alignment.evidence.assign(alpha=alignment.alpha)
        for row in evidence.to_dict("records"):
            keep = ("lhs", "rhs", "expected_sign", "est", "se", "pvalue", "evidence")
            path = f"{row['lhs']} ~ {row['rhs']}"
            paths.append(
                {"model": row["model"], "variant": variant, "path": path,
                 **{k: row[k] for k in keep}, "conclusion": conclusion(row)}
            )  # fmt: skip
    columns = ["model", "variant", "path", "lhs", "rhs", "expected_sign", "est", "se", "pvalue",
               "evidence", "conclusion"]  # fmt: skip
    vaar = pd.DataFrame(scores)
    if "vaar_soft" not in vaar:
        vaar["vaar_soft"] = math.nan
    return vaar, pd.DataFrame(paths, columns=columns)


def majority(conclusions: dict[str, str], base: str):
    """The majority conclusion over variants (variant -> conclusion, estimable ones only)."""
    if not conclusions:
        return None
    counts = Counter(conclusions.values())
    top = max(counts.values())
    tied = [c for c in counts if counts[c] == top]
    if len(tied) > 1 and conclusions.get(base) in tied:
        return conclusions[base]
    order = {c: i for i, c in enumerate(CONCLUSIONS)}
    return min(tied, key=lambda c: order.get(c, len(order)) if isinstance(c, str) else repr(c))


def flip_table(paths: pd.DataFrame, base: str) -> pd.DataFrame:
    """Per model and path: the majority conclusion and the variants that flip from it."""
    rows = []
    for (model, path), group in paths.groupby(["model", "path"], sort=False):
        usable = group[group["conclusion"] != NOT_ESTIMABLE]
        seen = dict(zip(usable["variant"], usable["conclusion"], strict=True))
        main = majority(seen, base)
        changes = [v for v, c in seen.items() if c != main]
        decided = majority({v: c for v, c in seen.items() if c in (AGREES, REVERSES)}, base)
        opposite = {AGREES: REVERSES, REVERSES: AGREES}.get(decided)
        flips = [v for v, c in seen.items() if c == opposite]
        signs = np.sign(usable["est"].to_numpy(float))
        usual = np.sign(signs.sum()) if signs.sum() else (signs[0] if len(signs) else 0)
        n = len(seen) or math.nan
        rows.append(
            {
                "model": model, "path": path, "majority": main, "n_variants": len(seen),
                "n_changes": len(changes), "change_share": len(changes) / n,
                "n_flips": len(flips), "flip_share": len(flips) / n,
                "sign_change_share": float((signs != usual).mean()) if len(signs) else math.nan,
                "changed_variants": ", ".join(f"{v} ({seen[v]})" for v in changes),
                "not_estimable": ", ".join(group.loc[group["conclusion"] == NOT_ESTIMABLE,
                                                     "variant"]),
            }
        )  # fmt: skip
    columns = ["model", "path", "majority", "n_variants", "n_changes", "change_share", "n_flips",
               "flip_share", "sign_change_share", "changed_variants", "not_estimable"]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def item_profiles(scored: pd.DataFrame, instruments) -> pd.DataFrame:
    """Mean scored answer per model x variant x item on a 0-1 scale (POMP): the profile whose
    agreement across variants the ICC measures."""
    frames = []
    for inst in instruments:
        items = [i.id for i in inst.items if i.id in scored.columns]
        if not items:
            continue
        span = inst.scale_max - inst.scale_min
        means = scored.groupby(["model", "variant"], sort=False)[items].mean()
        frames.append(((means - inst.scale_min) / span).stack().rename("pomp").reset_index())
    columns = ["model", "variant", "item", "pomp"]
    if not frames:
        return pd.DataFrame(columns=columns)
    out = pd.concat(frames, ignore_index=True)
    return out.set_axis(columns, axis=1)


def stability_table(vaar: pd.DataFrame, flips: pd.DataFrame, items: pd.DataFrame):
    """Per model: how much VAAR moves across variants, the largest flip share, the ICC."""
    rows = []
    for model, group in vaar.groupby("model", sort=False):
        soft = group["vaar_soft"].dropna().to_numpy(float)
        hard = group["vaar_hard"].dropna().to_numpy(float) if "vaar_hard" in group else soft[:0]
        mine = items[items["model"] == model]
        profile = mine.pivot_table(index="item", columns="variant", values="pomp")
        mine_flips = flips[flips["model"] == model]
        share, change = mine_flips["flip_share"], mine_flips["change_share"]
        rows.append(
            {
                "model": model, "n_variants": len(group), "n_estimable": len(soft),
                "vaar_soft_mean": soft.mean() if len(soft) else math.nan,
                "vaar_soft_min": soft.min() if len(soft) else math.nan,
                "vaar_soft_max": soft.max() if len(soft) else math.nan,
                "vaar_soft_range": np.ptp(soft) if len(soft) else math.nan,
                "vaar_soft_sd": soft.std(ddof=1) if len(soft) > 1 else math.nan,
                "vaar_hard_range": np.ptp(hard) if len(hard) else math.nan,
                "max_change_share": change.max() if len(change) else math.nan,
                "max_flip_share": share.max() if len(share) else math.nan,
                **icc(profile.to_numpy(float)),
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def where(deviating: list[str], variants: list[str], factors: dict, varying: list[str]) -> str:
    """Words for what sets the `deviating` variants apart from the other `variants`."""
    dev = set(deviating)
    shared = []
    for factor in varying:
        for level in dict.fromkeys(factors[v].get(factor) for v in variants):
            having = {v for v in variants if factors[v].get(factor) == level}
            if having == dev:
                return f"when {factor.replace('_', ' ')} is {level}"
            if dev <= having:
                shared.append(f"{factor.replace('_', ' ')} = {level}")
    names = ", ".join(deviating)
    return f"in {names} (all with {', '.join(shared)})" if shared else f"in {names}"


def _headline(tuple_: tuple[str, ...], path_names: list[str]) -> str:
    kinds = tuple(dict.fromkeys(tuple_))
    if kinds in HEADLINES:
        return HEADLINES[kinds]
    return ", ".join(f"{p} {c}" for p, c in zip(path_names, tuple_, strict=True))


def verdict_table(paths, flips, factors: dict, varying: list, base: str, order=None):
    """One plain-words verdict per model (RULES["verdict"]), with the block-order finding."""
    rows = []
    order_rows = {r["model"]: r for r in (order.to_dict("records") if order is not None else [])}
    for model, group in paths.groupby("model", sort=False):
        wide = group.pivot_table(index="variant", columns="path", values="conclusion",
                                 aggfunc="first")  # fmt: skip
        wide = wide.reindex([v for v in factors if v in wide.index])
        names = list(wide.columns)
        usable = wide[~(wide == NOT_ESTIMABLE).any(axis=1)]
        lost = [v for v in wide.index if v not in usable.index]
        lost += [v for v in factors if v not in wide.index]
        tuples = {v: tuple(r) for v, r in zip(usable.index, usable.to_numpy(), strict=True)}
        main = majority(tuples, base)
        holding = [v for v, t in tuples.items() if t == main]
        others = [v for v in tuples if v not in holding]
        n = len(tuples)
        if not n:
            text, stable = "not estimable in any variant", False
        else:
            head = _headline(main, names)
            flipped = int(flips.loc[flips["model"] == model, "n_flips"].sum()) > 0
            stable = not flipped and n >= 2
            if not others:
                text = f"stable across all {n} estimable variants: {head}"
            else:
                verb = "flips" if flipped else "changes"
                text = f"{head} in {len(holding)} of {n} variants; {verb} " + where(
                    others, list(tuples), factors, varying
                )
                text += "" if flipped else " (no path flips sign)"
        if lost:
            text += f"; not estimable in {len(lost)} variant(s): {', '.join(lost)}"
        extra = order_rows.get(model, {}).get("finding")
        rows.append(
            {
                "model": model, "verdict": text + "." + (f" {extra}" if extra else ""),
                "stable": stable, "holds": len(holding), "n_estimable": n,
                "deviating_variants": others, "not_estimable_variants": lost,
                "majority_conclusion": "; ".join(
                    f"{p}: {c}" for p, c in zip(names, main or (), strict=False)
                ),
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


def summarize(
    alignments: dict,
    factors: dict[str, dict[str, str]],
    *,
    scored: pd.DataFrame,
    instruments,
    failures: dict[str, str] | None = None,
    order: dict | None = None,
    alpha: float = 0.05,
) -> MultiverseResult:
    """The multiverse result from each variant's AlignmentResult (`alignments`: variant ->
    result; a variant that could not be analysed is in `failures` with its reason), the
    variants' factor levels, the scored answers of every variant (`scored`, with a `variant`
    column, for the profile ICC) and the block-order analysis (vaar.multiverse.order)."""
    failures = dict(failures or {})
    base = next(iter(factors))
    varying = varying_factors(factors)
    vaar, paths = variant_tables(alignments, failures, factors, varying)
    flips = flip_table(paths, base)
    stability = stability_table(vaar, flips, item_profiles(scored, instruments))
    order = order or {}
    summary = order.get("summary")
    verdicts = verdict_table(paths, flips, factors, varying, base, summary)
    return MultiverseResult(
        factors=factors,
        varying=varying,
        base_variant=base,
        alpha=alpha,
        vaar=vaar,
        paths=paths,
        flips=flips,
        stability=stability,
        verdicts=verdicts,
        order=summary if summary is not None else pd.DataFrame(),
        order_paths=order.get("paths", pd.DataFrame()),
        failures=failures,
        rules=RULES | ({"order": order["rule"]} if "rule" in order else {}),
    )
