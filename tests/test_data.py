"""Tables: export round trips (CSV, Parquet, JSONL) and read_table's errors on malformed files."""

import asyncio
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from vaar.cli import main
from vaar.collection import collect
from vaar.config import parse_study
from vaar.data import LONG_COLUMNS, long_table, read_table, score_items, wide_table
from vaar.errors import VaarError
from vaar.instruments import load_instrument

INSTRUMENTS = ["psa", "aods"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("store")
    study = parse_study(
        {
            "name": "d",
            "seed": 1,
            "sessions_per_model": 5,
            "instruments": INSTRUMENTS,
            "output_dir": str(out),
            "models": [
                {"name": "m1", "provider": "simulated", "params": {"malformed_rate": 0.2}},
                {"name": "m2", "provider": "simulated", "params": {"profile": "null"}},
            ],
        }
    )
    return asyncio.run(collect(study, progress=False)).store_path


@pytest.fixture(scope="module")
def instruments():
    return [load_instrument(i) for i in INSTRUMENTS]


def test_wide_table_has_one_row_per_session_and_raw_answers(store, instruments):
    long = long_table(store)
    wide = wide_table(long)
    items = [i.id for ins in instruments for i in ins.items]
    assert list(wide.columns[:2]) == ["model", "session"] and len(wide) == 10
    assert sorted(wide.columns[2:]) == sorted(items)
    row = long.iloc[3]
    cell = wide.loc[wide["session"] == row["session"], row["item"]].item()
    assert (np.isnan(cell) and row["status"] != "ok") or cell == row["value"]
    assert wide[items].isna().sum().sum() == (long["status"] != "ok").sum()


def test_score_items_reverses_only_reverse_keyed_items(store, instruments):
    wide = wide_table(long_table(store))
    scored = score_items(wide, instruments)
    for ins in instruments:
        for item in ins.items:
            expected = (
                ins.scale_min + ins.scale_max - wide[item.id] if item.reverse else wide[item.id]
            )
            assert scored[item.id].equals(expected)
    assert any(i.reverse for ins in instruments for i in ins.items)
    assert wide is not scored


def test_export_writes_csv_parquet_and_transcripts(store, instruments, tmp_path):
    result = CliRunner().invoke(main, ["export", str(store), "--out", str(tmp_path / "x")])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert names == [
        "long.csv",
        "long.parquet",
        "transcripts.jsonl",
        "wide.csv",
        "wide.parquet",
    ]
    long = long_table(store)
    for suffix in ("csv", "parquet"):
        back = read_table(tmp_path / "x" / f"long.{suffix}", instruments)
        assert list(back.columns) == LONG_COLUMNS and len(back) == len(long)
        assert np.allclose(back["value"], long["value"], equal_nan=True)
        wide = read_table(tmp_path / "x" / f"wide.{suffix}", instruments)
        assert wide.equals(wide_table(long)) or np.allclose(
            wide.iloc[:, 2:], wide_table(long).iloc[:, 2:], equal_nan=True
        )
    lines = (tmp_path / "x" / "transcripts.jsonl").read_text().splitlines()
    assert len(lines) == 10
    first = json.loads(lines[0])
    assert first["status"] == "done" and len(first["turns"]) == 28
    assert first["turns"][0]["messages"][0]["role"] == "user"


def bad(tmp_path, frame, name="t.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda f: f.drop(columns=["status"]), r"long table is missing column\(s\) \['status'\]"),
        (lambda f: f.assign(value="four"), r"column 'value' row 2 holds 'four', not a number"),
        (lambda f: f.assign(value=9.0, status="ok"), r"outside the scale 1..5"),
        (lambda f: f.assign(status="maybe"), r"unknown value\(s\) \['maybe'\]"),
    ],
)
def test_read_table_rejects_malformed_long_tables(store, instruments, tmp_path, change, message):
    frame = change(long_table(store))
    with pytest.raises(VaarError, match=message):
        read_table(bad(tmp_path, frame), instruments)


def test_read_table_rejects_malformed_wide_tables(store, instruments, tmp_path):
    wide = wide_table(long_table(store))
    with pytest.raises(VaarError, match=r"wide table is missing column\(s\) \['session'\]"):
        read_table(bad(tmp_path, wide.drop(columns=["session"])), instruments)
    item = instruments[0].items[0].id
    with pytest.raises(VaarError, match=rf"wide table is missing item column\(s\) \['{item}'\]"):
        read_table(bad(tmp_path, wide.drop(columns=[item])), instruments)
    with pytest.raises(VaarError, match=rf"column '{item}' row 3 holds 'x', not a number"):
        read_table(
            bad(tmp_path, wide.astype({item: object}).assign(**{item: ["1", "x"] + ["2"] * 8}))
        )
    with pytest.raises(VaarError, match=rf"column '{item}' row 2 holds 0, outside the scale 1..5"):
        read_table(bad(tmp_path, wide.assign(**{item: 0.0})), instruments)
    with pytest.raises(VaarError, match="repeated"):
        read_table(bad(tmp_path, pd.concat([wide, wide.iloc[:1]])), instruments)
    with pytest.raises(VaarError, match="no such file"):
        read_table(tmp_path / "nope.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(VaarError, match="unknown table format"):
        read_table(tmp_path / "t.xlsx")
    (tmp_path / "t.parquet").write_text("not parquet")
    with pytest.raises(VaarError, match="cannot read table"):
        read_table(tmp_path / "t.parquet")
    with pytest.raises(VaarError, match="not a vaar collection store|no such collection store"):
        long_table(tmp_path / "t.parquet")
