"""`vaar export`: the long and wide tables as CSV and Parquet, and transcripts as JSONL, so the
answers can be analysed anywhere and every reply audited against the request that produced it."""

from __future__ import annotations

import json
from pathlib import Path

from vaar.data import long_table, wide_table
from vaar.files import atomic_write, make_folder


def export_store(store_path: str | Path, out_dir: str | Path) -> list[Path]:
    from vaar.collection.store import transcripts

    long = long_table(store_path)  # a bad store fails before any folder is made
    out = make_folder(out_dir, "--out")
    wide = wide_table(long)
    written = []
    for name, frame in (("long", long), ("wide", wide)):
        csv, parquet = out / f"{name}.csv", out / f"{name}.parquet"
        with atomic_write(csv, "table") as tmp:
            frame.to_csv(tmp, index=False)
        with atomic_write(parquet, "table") as tmp:
            frame.to_parquet(tmp, index=False)
        written += [csv, parquet]
    jsonl = out / "transcripts.jsonl"
    with atomic_write(jsonl, "transcripts") as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in transcripts(store_path):
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    written.append(jsonl)
    return written
