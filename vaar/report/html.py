"""Render the self-contained HTML report from the estimates document and lavaan's text output.

Jinja2 with autoescape on for every template: model answers, model names, file names and config
values are all text from LLMs or users, so nothing reaches the page unescaped. The only markup
inserted as-is are the SVG plots that matplotlib writes (it escapes the text inside them).
"""

from __future__ import annotations

import json
import math

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from vaar.files import package_path
from vaar.invariance import RULES
from vaar.report import plots
from vaar.report.multiverse import multiverse_view

TEMPLATES = package_path("report", "templates")

FIT_COLUMNS = [
    ("level", "Level"),
    ("converged", "Converged"),
    ("npar", "npar"),
    ("chisq_scaled", "χ² (scaled)"),
    ("df_scaled", "df"),
    ("pvalue_scaled", "p"),
    ("cfi_robust", "CFI (robust)"),
    ("tli_robust", "TLI (robust)"),
    ("rmsea_robust", "RMSEA (robust)"),
    ("srmr", "SRMR"),
    ("cfi", "CFI"),
    ("rmsea", "RMSEA"),
    ("aic", "AIC"),
    ("bic", "BIC"),
]
STRUCTURAL_COLUMNS = [
    ("group", "Model"),
    ("path", "Path"),
    ("est", "Estimate"),
    ("se", "SE"),
    ("z", "z"),
    ("pvalue", "p"),
    ("ci", "95% CI"),
    ("std_all", "Std. (all)"),
]
VAAR_COLUMNS = [
    ("model", "Model"),
    ("rank", "Rank"),
    ("vaar_soft", "VAAR soft"),
    ("vaar_soft_ci", "95% CI"),
    ("vaar_hard", "VAAR hard"),
    ("vaar_logloss", "VAAR log-loss"),
    ("n_paths", "Paths"),
    ("draws_ok", "Draws used"),
    ("draws_failed", "Draws failed"),
]
BOOTSTRAP_ONLY = ("vaar_soft_ci", "draws_ok", "draws_failed")  # shown when bootstrapped
VAAR_CI = ("vaar_soft_ci_lower", "vaar_soft_ci_upper")  # the bootstrap's interval columns
COLLECTION_COLUMNS = [
    ("model", "Model"),
    ("sessions", "Sessions"),
    ("done", "Done"),
    ("failed", "Failed"),
    ("valid_rate", "Valid answers"),
    ("answers_invalid", "Invalid"),
    ("answers_refused", "Refused"),
    ("answers_error", "Errors"),
    ("requests", "Requests"),
    ("retries", "Retries"),
    ("prompt_tokens", "Prompt tokens"),
    ("completion_tokens", "Completion tokens"),
    ("cache_read_tokens", "Prompt tokens read from cache"),
    ("cache_write_tokens", "Prompt tokens written to cache"),
    ("reasoning_tokens", "Reasoning tokens"),
    ("cost", "Cost"),
]
PROFILE_COLUMNS = [
    ("model", "Model"),
    ("instrument", "Instrument"),
    ("factor", "Factor"),
    ("n_items", "Items"),
    ("n_sessions", "Sessions"),
    ("mean", "Mean"),
    ("sd", "SD"),
]
STYLE_COLUMNS = [
    ("model", "Model"),
    ("instrument", "Instrument"),
    ("factor", "Factor"),
    ("acquiescence", "Acquiescence (POMP)"),
    ("extreme", "Extreme answers"),
    ("straightlining", "Straight-lining"),
    ("invalid_share", "Invalid"),
    ("refused_share", "Refused"),
    ("error_share", "Errors"),
    ("position_r", "Position r"),
    ("split_half_diff", "Split-half |Δ|"),
    ("note", "Note"),
]
COMPARISON_COLUMNS = [
    ("to", "Level"),
    ("from", "Against"),
    ("chisq_diff", "Δχ²"),
    ("df_diff", "Δdf"),
    ("lrt_pvalue", "p (LRT)"),
    ("lrt_method", "LRT method"),
    ("d_cfi", "ΔCFI"),
    ("d_rmsea", "ΔRMSEA"),
    ("d_srmr", "ΔSRMR"),
    ("holds", "Holds"),
    ("reason", "Why"),
]
EVIDENCE_COLUMNS = [
    ("model", "Model"),
    ("path", "Path"),
    ("expected_sign", "Expected sign"),
    ("est", "Estimate"),
    ("se", "SE"),
    ("z", "z"),
    ("pvalue", "p"),
    ("evidence", "Sign evidence Φ(s·z)"),
]
LRT_COLUMNS = [("wald_z", "Wald z"), ("lr_chisq", "LR Δχ²")]  # evidence "lrt": z is the LR z


def fmt(value, digits: int = 3) -> str:
    """Numbers for people: fixed decimals, '—' for missing, integers as integers."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "—"
        if value.is_integer() and (abs(value) >= 1000 or digits == 0):
            return f"{value:.0f}"
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def fmt_p(value) -> str:
    if isinstance(value, float) and math.isfinite(value) and value < 0.001:
        return "< .001"
    return fmt(value)


COUNT_KEYS = {
    "npar", "df", "df_scaled", "df_diff", "n_paths", "n_items", "n_sessions", "sessions",
    "n_splits", "n_factors", "step", "requests", "retries", "prompt_tokens",
    "completion_tokens", "done", "failed", "n_estimable", "n_flips", "n_targets", "n_raters",
    "paths_df_diff",
}  # fmt: skip


def text_keys(rows: list[dict]) -> set[str]:
    """Columns whose first present value is text (left-aligned, header included)."""
    keys: dict[str, bool] = {}
    for row in rows:
        for key, value in row.items():
            if key not in keys and value is not None:
                keys[key] = isinstance(value, str)
    return {k for k, is_text in keys.items() if is_text}


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["fmt_p"] = fmt_p
    env.globals["text_keys"] = text_keys
    env.globals["count_keys"] = COUNT_KEYS
    return env


def _ci(row: dict, lower: str, upper: str) -> str:
    lo, hi = row.get(lower), row.get(upper)
    return f"[{fmt(lo)}, {fmt(hi)}]" if lo is not None and hi is not None else "—"


def structural_level(doc: dict) -> str | None:
    """The level whose structural paths are shown: the one VAAR scores; without VAAR the
    highest level that holds; else the first level fitted."""
    alignment = doc.get("alignment") or {}
    levels = [r["level"] for r in doc["structural"]]
    for candidate in (alignment.get("level"), doc["invariance"]["decision"].get("highest")):
        if candidate in levels:
            return candidate
    return levels[0] if levels else None


def view(doc: dict) -> dict:
    """Everything the template shows, derived from the document (formatting, ranking, plots)."""
    study = doc["study"]
    models = study["models"]
    level = structural_level(doc)
    shown = [r for r in _paths(doc["structural"]) if r["level"] == level]
    alignment = doc["alignment"]
    scores, evidence, human = [], [], []
    lo, hi = VAAR_CI
    if alignment:
        ranked = sorted(
            alignment["scores"],
            key=lambda r: -r["vaar_soft"] if r.get("vaar_soft") is not None else math.inf,
        )
        scores = [
            dict(
                r,
                rank=i + 1 if r.get("vaar_soft") is not None else None,
                vaar_soft_ci=_ci(r, lo, hi),
            )
            for i, r in enumerate(ranked)
        ]  # unscored models are listed last, without a rank
        evidence = [dict(r, path=f"{r['lhs']} ~ {r['rhs']}") for r in alignment["path_evidence"]]
        human = _paths(alignment["human_paths"])
    profile_rows, scales = profile_series(doc)
    fits = doc["invariance"]["fits"]
    profile_table = doc["profiles"]["table"]
    decision = doc["invariance"]["decision"]
    rule = RULES.get(decision.get("rule") or "")
    return {
        "doc": doc,
        "decision_level": decision.get("highest"),
        "rule_text": rule.description if rule else "",
        "comparison_columns": _present(COMPARISON_COLUMNS, doc["invariance"]["comparisons"]),
        "study": study,
        "level": level,
        "fit_columns": _present(FIT_COLUMNS, fits),
        "structural_columns": STRUCTURAL_COLUMNS,
        "structural": shown,
        "vaar_columns": [
            c for c in VAAR_COLUMNS if c[0] not in BOOTSTRAP_ONLY or any(r.get(lo) for r in scores)
        ],
        "scores": scores,
        "evidence_columns": EVIDENCE_COLUMNS
        + (LRT_COLUMNS if ((alignment or {}).get("evidence") or {}).get("method") == "lrt" else []),
        "evidence": evidence,
        "human_paths": human,
        "columns_of": columns_of,
        "profile_columns": PROFILE_COLUMNS,
        "collection_columns": _present(COLLECTION_COLUMNS, doc["collection"]["models"]),
        "style_columns": _present(STYLE_COLUMNS, profile_table),
        "plots": {
            "forest": plots.forest_plot(
                shown, models, f"Structural paths per model ({level} model)"
            ),
            "vaar": plots.ranked_plot(
                scores, "vaar_soft", lo, hi, "VAAR (soft) per model", "VAAR soft (0 to 1)"
            )
            if scores
            else None,
            "profiles": plots.profile_plot(
                profile_rows, models, scales, "Privacy-PSA-AoDS profiles per model"
            ),
        },
    }


def _present(columns: list[tuple[str, str]], rows: list[dict]) -> list[tuple[str, str]]:
    """The columns that at least one row has."""
    return [c for c in columns if any(c[0] in r for r in rows)]


def profile_series(doc: dict) -> tuple[list[dict], list[tuple]]:
    """Whole-instrument profile rows as (model, scale, mean, mean - sd, mean + sd), and the
    instruments as scales with their response ranges, in the order administered."""
    rows = []
    for row in doc["profiles"]["table"]:
        if row.get("factor") not in (None, "*") or row.get("mean") is None:
            continue
        sd = row.get("sd")
        spread = sd is not None
        rows.append(
            {
                "model": row["model"],
                "scale": row["instrument"],
                "mean": row["mean"],
                "lower": row["mean"] - sd if spread else None,
                "upper": row["mean"] + sd if spread else None,
            }
        )
    present = {r["scale"] for r in rows}
    scales = [
        (i["id"], i.get("short_title") or i["id"], i.get("scale_min"), i.get("scale_max"))
        for i in doc["instruments"]
        if i["id"] in present
    ]
    return rows, scales


def _paths(rows: list[dict]) -> list[dict]:
    """Structural estimate rows with a readable path and a formatted 95% CI."""
    return [
        dict(r, path=f"{r['lhs']} ~ {r['rhs']}", ci=_ci(r, "ci_lower", "ci_upper")) for r in rows
    ]


def columns_of(rows: list[dict]) -> list[tuple[str, str]]:
    """All keys of a list of rows, in first-seen order, as (key, header)."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [(k, k.replace("_", " ")) for k in keys]


def render_html(doc: dict, lavaan_output: dict | None = None) -> str:
    """The report page: one HTML file with inline CSS and SVG, no scripts, no external URLs."""
    template = _environment().get_template("report.html.j2")
    context = view(doc)
    context["plots"] = {k: Markup(v) if v else None for k, v in context["plots"].items()}
    context["lavaan_output"] = {str(k): str(v) for k, v in (lavaan_output or {}).items()}
    context["multiverse"] = multiverse_view(doc, _ci)
    if context["multiverse"] and context["multiverse"]["heat_map"]:
        context["multiverse"]["heat_map"] = Markup(context["multiverse"]["heat_map"])
    return template.render(**context)


def render_index(title: str, entries: list[dict]) -> str:
    """The batch index: one row per study with a link to its report or its error."""
    return _environment().get_template("index.html.j2").render(title=title, entries=entries)
