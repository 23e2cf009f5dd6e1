"""Report plots as inline SVG strings, drawn by matplotlib from the estimates document.

matplotlib (object API, SVG canvas, no pyplot state) because it is well kept, works offline,
needs no JavaScript in the page, and gives vector plots that stay sharp when zoomed or printed.
Text stays text (`svg.fonttype = none`) so the numbers in a plot can be searched and copied.
Colours: the Okabe-Ito palette, distinguishable with the common colour-vision deficiencies.
"""

from __future__ import annotations

import html
import io
import math

import matplotlib as mpl
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

OKABE_ITO = [
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#F0E442",  # yellow
    "#000000",  # black
]
_RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "vaar",  # stable element ids: the same document gives the same page
    "text.parse_math": False,  # a '$' in a model name is text, not LaTeX
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


# No RDF block (creator URL, date): the page names no outside address and is reproducible.
NO_METADATA = {"Format": None, "Type": None, "Creator": None, "Date": None}


def colour(i: int) -> str:
    return OKABE_ITO[i % len(OKABE_ITO)]


def _svg(fig: Figure, title: str) -> str:
    """The figure as an <svg> element (no XML prolog) with an accessible <title>."""
    buf = io.StringIO()
    with mpl.rc_context(_RC):
        FigureCanvasSVG(fig).print_svg(buf, metadata=NO_METADATA)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    label = html.escape(title, quote=True)
    return svg.replace(">", f' role="img" aria-label="{label}">', 1)


def _ok(*values) -> bool:
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def forest_plot(rows: list[dict], models: list[str], title: str) -> str | None:
    """Structural path estimates with 95% CIs: one panel per path, one row per model."""
    paths = list(dict.fromkeys((r["lhs"], r["rhs"]) for r in rows))
    if not paths:
        return None
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(3.4 * len(paths), 0.45 * len(models) + 1.2), layout="constrained")
        axes = fig.subplots(1, len(paths), sharey=True, squeeze=False)[0]
        for ax, (lhs, rhs) in zip(axes, paths, strict=True):
            for y, model in enumerate(models):
                row = next(
                    (r for r in rows if (r["lhs"], r["rhs"], r["group"]) == (lhs, rhs, model)),
                    None,
                )
                if row is None or not _ok(row.get("est")):
                    continue
                lo, hi = row.get("ci_lower"), row.get("ci_upper")
                if _ok(lo, hi):
                    ax.plot([lo, hi], [y, y], color=colour(y), linewidth=2)
                ax.plot(row["est"], y, "o", color=colour(y), markersize=6)
            ax.axvline(0, color="#555555", linewidth=0.8, linestyle="--")
            ax.set_title(f"{rhs} → {lhs}")
            ax.set_xlabel("estimate (95% CI)")
        axes[0].set_yticks(range(len(models)), models)
        axes[0].invert_yaxis()
        return _svg(fig, title)


def ranked_plot(rows: list[dict], value: str, lower: str, upper: str, title: str, xlabel: str):
    """Models ranked by a score, with an interval when one is available."""
    rows = sorted((r for r in rows if _ok(r.get(value))), key=lambda r: r[value], reverse=True)
    if not rows:
        return None
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(6.4, 0.42 * len(rows) + 1.0), layout="constrained")
        ax = fig.subplots()
        for y, row in enumerate(rows):
            if _ok(row.get(lower), row.get(upper)):
                ax.plot([row[lower], row[upper]], [y, y], color=colour(0), linewidth=2)
            ax.plot(row[value], y, "o", color=colour(0), markersize=7)
            ax.annotate(
                f"{row[value]:.2f}",
                (row[value], y),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                fontsize=8,
            )
        ax.set_yticks(range(len(rows)), [str(r["model"]) for r in rows])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.axvline(0.5, color="#555555", linewidth=0.8, linestyle="--")
        ax.set_xlabel(xlabel)
        return _svg(fig, title)


def profile_plot(rows: list[dict], models: list[str], scales: list[tuple], title: str):
    """Mean score per model on each scale (one panel per scale, its own response range).

    `scales` is a list of (key, label, low, high); `rows` have model, scale, mean, lower, upper.
    """
    if not rows or not scales:
        return None
    with mpl.rc_context(_RC):
        fig = Figure(figsize=(2.6 * len(scales), 0.42 * len(models) + 1.2), layout="constrained")
        axes = fig.subplots(1, len(scales), sharey=True, squeeze=False)[0]
        for ax, (key, label, low, high) in zip(axes, scales, strict=True):
            for y, model in enumerate(models):
                row = next((r for r in rows if r["model"] == model and r["scale"] == key), None)
                if row is None or not _ok(row.get("mean")):
                    continue
                if _ok(row.get("lower"), row.get("upper")):
                    ax.plot([row["lower"], row["upper"]], [y, y], color=colour(y), linewidth=2)
                ax.plot(row["mean"], y, "D", color=colour(y), markersize=6)
            if _ok(low, high):
                ax.set_xlim(low - 0.2, high + 0.2)
            ax.set_title(label)
            ax.set_xlabel("mean score")
        axes[0].set_yticks(range(len(models)), models)
        axes[0].invert_yaxis()
        return _svg(fig, title)


def heat_map(
    cells: list[dict], rows: list[str], columns: list[str], title: str, marked=frozenset()
) -> str | None:
    """A rows x columns grid of VAAR soft (0 to 1): colour by value on a colour-blind-safe
    diverging map centred on 0.5, every cell also labelled with its value and interval (so
    colour is never the only code); hatched and labelled "n/e" where no value exists. `cells`
    have row, column, value, lower, upper; (row, column) pairs in `marked` get a heavy border."""
    if not cells or not rows or not columns:
        return None
    by_key = {(c["row"], c["column"]): c for c in cells}
    with mpl.rc_context(_RC):
        fig = Figure(
            figsize=(1.25 * len(columns) + 2.2, 0.62 * len(rows) + 1.6), layout="constrained"
        )
        ax = fig.subplots()
        cmap = mpl.colormaps["PuOr"]
        for y, row in enumerate(rows):
            for x, column in enumerate(columns):
                cell = by_key.get((row, column), {})
                value = cell.get("value")
                if _ok(value):
                    face, hatch = cmap(value), None
                    ci = (cell.get("lower"), cell.get("upper"))
                    label = f"{value:.2f}" + (f"\n[{ci[0]:.2f}, {ci[1]:.2f}]" if _ok(*ci) else "")
                    ink = "white" if abs(value - 0.5) > 0.35 else "black"
                else:
                    face, hatch, label, ink = "#f2f2f2", "//", "n/e", "black"
                heavy = (row, column) in marked
                ax.add_patch(
                    Rectangle(
                        (x - 0.5, y - 0.5), 1, 1, facecolor=face, hatch=hatch,
                        edgecolor="#000000" if heavy else "#ffffff",
                        linewidth=2.5 if heavy else 1,
                    )
                )  # fmt: skip
                ax.text(x, y, label, ha="center", va="center", fontsize=7.5, color=ink)
        ax.set_xlim(-0.5, len(columns) - 0.5)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
        ax.set_yticks(range(len(rows)), rows)
        ax.tick_params(length=0)
        for side in ("left", "bottom"):
            ax.spines[side].set_visible(False)
        mappable = ScalarMappable(norm=Normalize(0, 1), cmap=cmap)
        fig.colorbar(mappable, ax=ax, label="VAAR soft (0.5 = no evidence)", shrink=0.8)
        return _svg(fig, title)
