"""Tables from the collection store or from files: the long table (one row per session x
item), the wide table (one row per session, one raw-answer column per item) and reverse-keyed
scoring. Column contracts are in docs/architecture.md."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from vaar.errors import VaarError
from vaar.files import decode_text, read_bytes

LONG_COLUMNS = [
    "model",
    "session",
    "instrument",
    "item",
    "position",
    "raw",
    "value",
    "status",
    "attempts",
]
STATUSES = {"ok", "invalid", "refused", "error"}
# A multiverse study's tables have the variant of each session after the model (docs/collection.md,
# "Multiverse"); the columns that identify a session, item columns after them.
VARIANT = "variant"
ID_COLUMNS = ("model", VARIANT, "session")

__all__ = [
    "ID_COLUMNS",
    "LONG_COLUMNS",
    "VARIANT",
    "check_csv",
    "id_columns",
    "long_table",
    "read_table",
    "score_items",
    "wide_table",
]


def long_table(store_path: str | Path) -> pd.DataFrame:
    """The long table of a collection store, in session order then turn order."""
    from vaar.collection.store import Store

    store = Store(store_path, readonly=True)
    try:
        return long_frame(store.answers())
    finally:
        store.close()


def long_frame(rows: list[dict]) -> pd.DataFrame:
    """The long table from a store's answer rows (vaar.collection.store.Store.answers), with a
    `variant` column after `model` when the study is a multiverse."""
    frame = pd.DataFrame(rows, columns=[LONG_COLUMNS[0], VARIANT, *LONG_COLUMNS[1:]])
    if not (frame[VARIANT] != "").any():
        frame = frame.drop(columns=VARIANT)
    frame["value"] = frame["value"].astype(float)
    frame.loc[frame["status"] != "ok", "value"] = np.nan
    frame["position"] = frame["position"].astype(int)
    frame["attempts"] = frame["attempts"].astype(int)
    return frame


def _natural(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def id_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of `frame` that identify a session: model, (variant,) session."""
    return [c for c in ID_COLUMNS if c in frame.columns]


def wide_table(long: pd.DataFrame) -> pd.DataFrame:
    """One row per session: model, (variant,) session, then the raw answer of each item (NaN
    unless ok). Items are grouped by instrument in order of first appearance, in natural id
    order."""
    _require(long, LONG_COLUMNS, "long table")
    values = long["value"].where(long["status"] == "ok")
    frame = long.assign(value=values)
    instruments = list(dict.fromkeys(frame["instrument"]))
    items = []
    for ins in instruments:
        ids = frame.loc[frame["instrument"] == ins, "item"].unique()
        items += sorted(ids, key=_natural)
    sessions = frame[id_columns(frame)].drop_duplicates("session")
    pivot = frame.pivot_table(
        index="session", columns="item", values="value", aggfunc="first", dropna=False
    )
    wide = sessions.merge(pivot.reindex(columns=items).reset_index(), on="session", how="left")
    wide.columns.name = None
    for item in items:
        wide[item] = wide[item].astype(float)
    return wide.reset_index(drop=True)


def score_items(wide: pd.DataFrame, instruments) -> pd.DataFrame:
    """A copy with reverse-keyed items scored as scale_min + scale_max - raw."""
    scored = wide.copy()
    for instrument in instruments:
        for item in instrument.items:
            if item.reverse and item.id in scored.columns:
                scored[item.id] = instrument.scale_min + instrument.scale_max - scored[item.id]
    return scored


def check_csv(text: str, name: str, sep: str = ",") -> tuple[list[str], int]:
    """The header and the number of data rows of CSV text, after checks in one pass linear in
    its size (pandas would silently rename a repeated column, name an empty one "Unnamed: 3"
    and pad a short row with missing answers): VaarError naming the file and line."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    rows = 0
    try:
        header = [h.strip() for h in next(reader, [])]
        _check_header(header, name, sep)
        for row in reader:
            if not row:
                continue  # a blank line
            if len(row) != len(header):
                raise VaarError(
                    f"{name}: not a well-formed CSV file: line {reader.line_num} has "
                    f"{len(row)} field(s), the header {len(header)}"
                )
            rows += 1
    except csv.Error as exc:
        raise VaarError(
            f"{name}: not a well-formed CSV file: line {reader.line_num}: {exc}"
        ) from None
    if not rows:
        raise VaarError(f"{name}: a header row but no data rows")
    return header, rows


def _check_header(header: list[str], name: str, sep: str) -> None:
    if not any(header):
        raise VaarError(f"{name}: the first line is empty (expected a header row)")
    repeated = sorted(h for h, n in Counter(header).items() if n > 1)
    if repeated:
        raise VaarError(f"{name}: repeated column name(s) {repeated[:10]}")
    unnamed = [n for n, h in enumerate(header, 1) if not h]
    if unnamed:
        raise VaarError(f"{name}: column(s) {unnamed[:10]} have no name (empty header cell)")
    if len(header) == 1:
        others = [s for s in (";", "\t", ",", "|") if s != sep and s in header[0]]
        hint = f" (it seems separated by {others[0]!r})" if others else ""
        separator = "tab" if sep == "\t" else repr(sep)
        raise VaarError(
            f"{name}: one column {header[0][:60]!r}; expected a header row and columns "
            f"separated by {separator}{hint}"
        )


def read_frame(path: str | Path) -> pd.DataFrame:
    """Any CSV or Parquet table, read with errors that name the file (no column contract)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in {".parquet", ".pq", ".csv", ".txt"}:
        raise VaarError(f"{path}: unknown table format (use .csv or .parquet)")
    data = read_bytes(path)
    try:
        if suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(io.BytesIO(data))
        else:
            text = decode_text(data, str(path))
            check_csv(text, str(path))
            frame = pd.read_csv(io.StringIO(text))
            frame.columns = [str(c).strip() for c in frame.columns]
    except VaarError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for unreadable files
        raise VaarError(f"{path}: cannot read table: {_first_line(exc)}") from None
    if frame.empty:
        raise VaarError(f"{path}: the table has no rows")
    return frame


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def read_table(path: str | Path, instruments=None) -> pd.DataFrame:
    """An exported long or wide table (CSV or Parquet), recognised by its columns and checked:
    missing columns, non-numeric answers and (given the instruments) off-scale values are
    errors naming the column and row."""
    path = Path(path)
    frame = read_frame(path)
    if {"instrument", "item", "value"} <= set(frame.columns):
        return _check_long(frame, path, instruments)
    return _check_wide(frame, path, instruments)


def _require(frame, columns, what, path=None) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        where = f"{path}: " if path else ""
        raise VaarError(f"{where}{what} is missing column(s) {missing} (has {list(frame.columns)})")


def _numeric(frame, column, path) -> pd.Series:
    converted = pd.to_numeric(frame[column], errors="coerce")
    bad = converted.isna() & frame[column].notna() & (frame[column].astype(str).str.strip() != "")
    if bad.any():
        row = int(bad.idxmax())
        raise VaarError(
            f"{path}: column {column!r} row {row + 2} holds {frame[column][row]!r}, not a number"
        )
    return converted.astype(float)


def _scales(instruments) -> dict[str, tuple[int, int]]:
    return {i.id: (ins.scale_min, ins.scale_max) for ins in instruments or [] for i in ins.items}


def _check_range(values: pd.Series, lo, hi, label, path, rows=None) -> None:
    bad = values.notna() & ((values < lo) | (values > hi) | (values % 1 != 0))
    if bad.any():
        row = int(bad.idxmax())
        raise VaarError(
            f"{path}: {label} row {row + 2} holds {float(values[row]):g}, "
            f"outside the scale {lo}..{hi} (or not a whole option)"
        )


def _check_long(frame, path, instruments) -> pd.DataFrame:
    _require(frame, LONG_COLUMNS, "long table", path)
    variant = [VARIANT] if VARIANT in frame.columns else []
    frame = frame[[LONG_COLUMNS[0], *variant, *LONG_COLUMNS[1:]]].copy()
    frame["value"] = _numeric(frame, "value", path)
    frame["position"] = _numeric(frame, "position", path)
    frame["attempts"] = _numeric(frame, "attempts", path)
    frame["session"] = frame["session"].astype(str)
    frame["raw"] = frame["raw"].fillna("").astype(str)
    repeated = frame.duplicated(["session", "item"], keep=False)
    if repeated.any():
        lines = (frame.index[repeated][:6] + 2).tolist()  # +2: 1-based, after the header
        first = frame[repeated].iloc[0]
        raise VaarError(
            f"{path}: {int(repeated.sum())} rows repeat a (session, item) pair, e.g. session "
            f"{first['session']!r} item {first['item']!r}; lines {lines}: each session answers "
            "each item once"
        )
    unknown = sorted(set(frame["status"].astype(str)) - STATUSES)
    if unknown:
        raise VaarError(
            f"{path}: column 'status' has unknown value(s) {unknown} (use {sorted(STATUSES)})"
        )
    frame.loc[frame["status"] != "ok", "value"] = np.nan
    scales = _scales(instruments)
    for item, rows in frame.groupby("item").groups.items():
        if item in scales:
            _check_range(frame.loc[rows, "value"], *scales[item], f"item {item!r}", path)
        elif instruments:
            raise VaarError(f"{path}: item {item!r} belongs to none of the instruments")
    return frame


def _check_wide(frame, path, instruments) -> pd.DataFrame:
    _require(frame, ["model", "session"], "wide table", path)
    frame = frame.copy()
    frame["model"] = frame["model"].astype(str)
    frame["session"] = frame["session"].astype(str)
    if VARIANT in frame.columns:
        frame[VARIANT] = frame[VARIANT].astype(str)
    items = [c for c in frame.columns if c not in ID_COLUMNS]
    if not items:
        raise VaarError(f"{path}: wide table has no item columns besides model and session")
    dupes = frame["session"][frame["session"].duplicated()].unique().tolist()
    if dupes:
        raise VaarError(f"{path}: session id(s) repeated in a wide table: {dupes[:5]}")
    scales = _scales(instruments)
    if instruments:
        missing = [i for i in scales if i not in frame.columns]
        if missing:
            raise VaarError(f"{path}: wide table is missing item column(s) {missing}")
    for item in items:
        frame[item] = _numeric(frame, item, path)
        if item in scales:
            _check_range(frame[item], *scales[item], f"column {item!r}", path)
    return frame
