"""The index page of a batch of reports (`vaar analyze` on several studies): every study with a
link to its report and its headline numbers, or why it failed."""

from __future__ import annotations

import json
from pathlib import Path

from vaar.files import write_text


def index_summary(report_dir: Path) -> dict:
    """Models, the invariance level and the best VAAR of a written report, for its index row."""
    doc = json.loads((report_dir / "estimates.json").read_text(encoding="utf-8"))
    scores = (doc.get("alignment") or {}).get("scores") or []
    scored = [s for s in scores if s.get("vaar_soft") is not None]
    best = max(scored, key=lambda s: s["vaar_soft"], default=None)
    return {
        "models": len(doc["study"]["models"]),
        "level": doc["invariance"]["decision"].get("highest"),
        "best": f"{best['model']}: {best['vaar_soft']:.2f}" if best else None,
    }


def write_index(out_root: Path, outcomes: list, title: str = "vaar reports") -> Path:
    """The batch index page; `outcomes` have name, ok, report (its index.html or None), error
    and summary (from index_summary), as vaar.pipeline.Outcome does."""
    from vaar.report.html import render_index

    entries = []
    for o in outcomes:
        href = o.report.relative_to(out_root).as_posix() if o.report else None
        entry = {"models": None, "level": None, "best": None, **o.summary}
        entries.append({**entry, "name": o.name, "ok": o.ok, "href": href, "error": o.error})
    out_root.mkdir(parents=True, exist_ok=True)
    index = out_root / "index.html"
    write_text(index, render_index(title, entries), "index page")
    return index
