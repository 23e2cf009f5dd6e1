"""Files vaar writes (exports, report tables, index pages, bundles) are written all or nothing
(vaar.files.atomic_write): on a full disk, a real tmpfs filled to the last byte, the command
fails with one line naming the file, the old file is left exactly as it was, and no truncated
or temporary file stays behind."""

import asyncio
import json
import shutil
import stat
import subprocess
import sys
from types import SimpleNamespace

import pandas as pd
import pytest
from fakes.disk import tmpfs  # noqa: F401  (fixture)
from fakes.fixtures import ladder_call

from vaar.collection import collect
from vaar.config import parse_study
from vaar.errors import VaarError
from vaar.files import atomic_write, write_text

FRAME = pd.DataFrame({"model": ["m"] * 4000, "session": [f"s{i}" for i in range(4000)]})

# the ways vaar writes a file, each given the temporary path to write
WRITERS = {
    "text": lambda p: p.write_text("x" * 200_000, encoding="utf-8"),
    "csv": lambda p: FRAME.to_csv(p, index=False),
    "parquet": lambda p: FRAME.to_parquet(p, index=False),
    "copy": lambda p: shutil.copyfile(json.__file__, p),
    "stream": lambda p: _stream(p),
}


def _stream(path):
    with open(path, "w", encoding="utf-8") as f:
        for i in range(20_000):
            f.write(json.dumps({"line": i, "text": "y" * 20}) + "\n")


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "filler"}


@pytest.mark.parametrize("writer", WRITERS)
def test_a_full_disk_leaves_the_old_file_and_no_partial_one(tmpfs, writer):  # noqa: F811
    old = tmpfs.path / "old.out"
    old.write_bytes(b"the previous version\n")
    before = snapshot(tmpfs.path)
    tmpfs.fill()
    for target in (old, tmpfs.path / "new.out"):  # a file replaced, a file created
        with pytest.raises(VaarError) as failed, atomic_write(target, "table") as tmp:
            WRITERS[writer](tmp)
        message = str(failed.value)
        assert message.startswith(f"{target}: cannot write the table (")
        assert "No space left on device" in message and "\n" not in message
        assert snapshot(tmpfs.path) == before  # old intact, nothing new, no temporary file


@pytest.mark.parametrize("writer", WRITERS)
def test_a_written_file_replaces_the_old_one_with_the_usual_mode(tmp_path, writer):
    target = tmp_path / "out.bin"
    target.write_text("old")
    plain = tmp_path / "plain.bin"
    WRITERS[writer](plain)
    with atomic_write(target) as tmp:
        assert tmp.parent == target.parent and not tmp.exists()
        WRITERS[writer](tmp)
    assert target.read_bytes() == plain.read_bytes()
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin", "plain.bin"]


def test_an_error_while_writing_is_raised_as_is_and_leaves_the_old_file(tmp_path):
    target = write_text(tmp_path / "a.json", "{}")
    with pytest.raises(ZeroDivisionError), atomic_write(target) as tmp:
        tmp.write_text("half")
        1 / 0  # noqa: B018
    assert target.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["a.json"]
    with pytest.raises(VaarError, match=r"a.json/x: cannot write the file \(.*a.json is a file"):
        write_text(target / "x", "no folder here")


@pytest.fixture
def store(tmp_path):
    study = parse_study(
        {
            "name": "export",
            "seed": 1,
            "sessions_per_model": 30,
            "instruments": ["psa", "aods"],
            "output_dir": str(tmp_path / "study"),
            "models": [{"name": "sim", "provider": "simulated"}],
        }
    )
    return asyncio.run(collect(study, progress=False)).store_path


def test_export_onto_a_full_disk_is_one_line_and_keeps_the_old_tables(store, tmpfs):  # noqa: F811
    out = tmpfs.path / "export"
    command = [sys.executable, "-c", "from vaar.cli import main; main()", "export", str(store)]
    first = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    before = snapshot(out)
    assert set(before) >= {"long.csv", "wide.csv", "long.parquet", "transcripts.jsonl"}
    (out / "long.csv").unlink()  # one table the next export must create
    del before["long.csv"]
    tmpfs.fill()
    again = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2
    (line,) = again.stderr.splitlines()
    assert line.startswith(f"error: {out}/") and "No space left on device" in line, line
    assert snapshot(out) == before  # no truncated table, no temporary file


def test_report_tables_and_index_onto_a_full_disk(tmpfs):  # noqa: F811
    from vaar.pipeline import Outcome
    from vaar.report.index import write_index
    from vaar.report.write import write_tables

    doc = {"estimates": [{"lhs": "f", "op": "=~", "rhs": f"x{i}", "est": i} for i in range(3000)]}
    out = tmpfs.path / "report"
    out.mkdir()
    (table,) = write_tables(out, doc)
    outcomes = [Outcome(f"study {i}", out, error="x" * 200) for i in range(400)]
    index = write_index(out, outcomes)
    before = snapshot(out)
    tmpfs.fill()
    doc["estimates"].append({"lhs": "g", "op": "~", "rhs": "f", "est": 1.0})
    with pytest.raises(VaarError, match=f"^{table}: cannot write"):
        write_tables(out, doc)
    with pytest.raises(VaarError, match=f"^{index}: cannot write"):
        write_index(out, outcomes + outcomes)
    assert snapshot(out) == before


def test_a_bundle_onto_a_full_disk_leaves_no_partial_file(tmpfs):  # noqa: F811
    from vaar.sem import write_bundle

    sem = SimpleNamespace(
        call=ladder_call("f =~ x1 + x2 + x3"),
        data=FRAME,
        to_dict=lambda: {"estimates": []},
    )
    bundle = tmpfs.path / "bundle"
    write_bundle(bundle, sem)
    before = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    tmpfs.fill()
    sem.data = pd.concat([FRAME] * 3)
    with pytest.raises(VaarError, match="cannot write"):
        write_bundle(bundle, sem)
    after = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in bundle.rglob("*") if p.name.endswith(".tmp")]
