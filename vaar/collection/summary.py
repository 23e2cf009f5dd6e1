"""CollectionSummary: the collection stage's result. Per model the sessions, answer statuses,
tokens and cost; what stopped the run or left it incomplete; a few answers that could not be
scored. The runner fills it from the store; for answers that come as a data file the counts
are taken from the tables (`counted_models`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only annotations: a collection worker process need not import pandas
    import pandas as pd

UNSCORED_PER_MODEL = 5
UNSCORED_MAX_CHARS = 300


@dataclass
class CollectionSummary:
    store_path: Path | None  # None: the answers came as a table, or from an estimates.json
    # per model: sessions, done, failed, ..., "answers" (status -> count), tokens, cost; or,
    # counted from a table, sessions and valid_rate
    models: dict[str, dict] = field(default_factory=dict)
    incomplete: list[str] = field(default_factory=list)  # one line per reason
    stopped: str | None = None  # e.g. "max cost reached"
    elapsed: float | None = None  # seconds the collection ran (None: not collected here)
    unscored_examples: list[dict] = field(default_factory=list)  # see unscored_examples()
    workers: int = 1  # processes that asked the sessions (vaar.collection.workers)

    @property
    def complete(self) -> bool:
        return not self.incomplete

    def to_dict(self) -> dict:
        out = asdict(self)
        out["store_path"] = str(self.store_path) if self.store_path else None
        out["complete"] = self.complete
        return out

    def lines(self) -> list[str]:
        out = []
        for name, m in self.models.items():
            valid = m["answers"].get("ok", 0)
            total = sum(m["answers"].values()) or 1
            out.append(
                f"{name}: {m['done']}/{m['sessions']} sessions done, {m['failed']} failed; "
                f"{valid / total:.1%} valid answers; {m['prompt_tokens']} prompt + "
                f"{m['completion_tokens']} completion tokens"
                + (f"; cost {m['cost']:.4f}" if m["cost"] else "")
            )
        if self.stopped:
            out.append(f"stopped: {self.stopped}")
        out += [f"incomplete: {why}" for why in self.incomplete]
        return out


def counted_models(long: pd.DataFrame | None, wide: pd.DataFrame) -> dict[str, dict]:
    """Sessions per model from the wide table and the share of valid answers from the long one
    (None without it), for answers vaar did not collect itself."""
    if "model" not in wide:
        return {}
    counts = wide.groupby("model", sort=False).size()
    valid: pd.Series | dict = {}
    if long is not None and "status" in long:
        valid = (long["status"] == "ok").groupby(long["model"], sort=False).mean()
    return {
        str(m): {"sessions": int(n), "valid_rate": _number(valid.get(m))} for m, n in counts.items()
    }


def _number(value) -> float | None:
    return None if value is None else float(value)


def unscored_examples(long: pd.DataFrame | None) -> list[dict]:
    """A few answers per model that could not be scored (invalid, refused, error), verbatim
    but shortened: what the models actually said is the first thing to check."""
    needed = {"model", "session", "item", "status", "raw"}
    if long is None or not needed <= set(long.columns):
        return []
    bad = long[(long["status"] != "ok") & long["raw"].notna()]
    bad = bad[bad["raw"].astype(str).str.strip() != ""]
    rows = []
    for _, group in bad.groupby("model", sort=False):
        for row in group.head(UNSCORED_PER_MODEL).itertuples():
            raw = str(row.raw)
            if len(raw) > UNSCORED_MAX_CHARS:
                raw = raw[:UNSCORED_MAX_CHARS] + " …"
            rows.append(
                {
                    "model": str(row.model),
                    "session": str(row.session),
                    "item": str(row.item),
                    "status": str(row.status),
                    "raw": raw,
                }
            )
    return rows
