"""A store path that is not a vaar collection store gets one line naming it, never a traceback,
from every command that takes a store: `vaar collect --store`, `vaar collect --cache`,
`vaar export` and `vaar analyze` on a .sqlite. An empty file is a new store for collect."""

import asyncio
import os
import re
import sqlite3

import pytest
from click.testing import CliRunner

from vaar.cli import main
from vaar.collection import collect
from vaar.collection.store import SCHEMA
from vaar.config import load_study


def other_app(path):
    con = sqlite3.connect(path)
    con.executescript("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);")
    con.execute("INSERT INTO users VALUES (1, 'ann')")
    con.commit()
    con.close()


def other_version(path):
    """vaar's tables, but `turns` without its `attempts` column (a store of another version)."""
    con = sqlite3.connect(path)
    con.executescript(SCHEMA.replace("  attempts INTEGER NOT NULL, finished", "  finished"))
    con.close()


def truncated(path, store):
    data = store.read_bytes()
    path.write_bytes(data[: len(data) // 3])


# name -> (make the bad file at `path` from a real store, a regex of what the error says)
BAD = {
    "text": (lambda p, s: p.write_text("model,session\na,b\n"), "not an SQLite database"),
    "binary": (lambda p, s: p.write_bytes(os.urandom(5000)), "not an SQLite database"),
    "png": (lambda p, s: p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200)), "not an SQLite"),
    "folder": (lambda p, s: p.mkdir(), "is a folder, not a collection store"),
    "under a file": (
        lambda p, s: p.parent.write_text("x"),
        r"cannot create its folder .*under-a-file|no such (collection store|file or folder)",
    ),
    "another app": (
        lambda p, s: other_app(p),
        r"not a vaar collection store \(its tables: users; another application's database\?\)",
    ),
    "another version": (
        lambda p, s: other_version(p),
        "not a collection store of this vaar version \\(table turns has columns",
    ),
    "truncated": (truncated, "malformed"),
    "empty": (lambda p, s: p.write_bytes(b""), "an empty database, not a vaar collection store"),
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A tiny simulated study and a real store of it (for the truncated case)."""
    tmp = tmp_path_factory.mktemp("study")
    path = tmp / "s.toml"
    path.write_text(
        f'name = "files"\nsessions_per_model = 2\ninstruments = ["psa"]\n'
        f'output_dir = "{tmp / "out"}"\n[[models]]\nname = "sim"\nprovider = "simulated"\n'
    )
    summary = asyncio.run(collect(load_study(path), progress=False))
    return path, summary.store_path


def bad_file(tmp_path, case, store):
    folder = tmp_path / ("under-a-file" if case == "under a file" else "bad")
    path = folder / "collection.sqlite"
    if case != "under a file":
        folder.mkdir()
    BAD[case][0](path, store)
    return path


COMMANDS = {
    "collect": lambda study, bad, out: ["collect", study, "--no-progress", "--store", bad],
    "export": lambda study, bad, out: ["export", bad, "--out", out],
    "analyze": lambda study, bad, out: ["analyze", bad, "--out", out],
}


def one_line(result) -> str:
    """The one stderr line of a failed command (no traceback, no uncaught exception)."""
    assert result.exit_code in (1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", BAD)
def test_a_bad_store_is_one_line_naming_it(tmp_path, study, case, command):
    study_file, store = study
    path = bad_file(tmp_path, case, store)
    args = COMMANDS[command](str(study_file), str(path), str(tmp_path / "report"))
    result = CliRunner().invoke(main, args)
    if case == "empty" and command == "collect":
        assert result.exit_code == 0, result.output  # an empty file is a new store
        return
    if case == "folder" and command == "analyze":  # a folder to analyze is a study folder
        assert "no study found" in one_line(result)
        return
    line = one_line(result)
    assert line.startswith(("error: ", "  FAILED  " if command == "analyze" else "error: ")), line
    assert str(path) in line and re.search(BAD[case][1], line), line
    if path.parent.is_dir() and case != "truncated":  # (that one still reads as a WAL store)
        # nothing was created beside a file that is not a store (vaar's lock file aside)
        assert not [p for p in path.parent.iterdir() if p.name.endswith(("-wal", "-shm"))]


@pytest.mark.parametrize("case", ["text", "folder", "another app", "truncated"])
def test_a_bad_reply_cache_is_one_line_naming_it(tmp_path, study, case):
    study_file, store = study
    path = bad_file(tmp_path, case, store)
    args = ["collect", str(study_file), "--no-progress", "--cache", str(path)]
    line = one_line(CliRunner().invoke(main, args))
    assert line.startswith(f"error: {path}: ") and "reply cache" in line or "malformed" in line


def test_another_apps_database_is_left_untouched(tmp_path, study):
    path = tmp_path / "app.sqlite"
    other_app(path)
    before = path.read_bytes()
    args = ["collect", str(study[0]), "--no-progress", "--store", str(path)]
    assert "another application's database" in one_line(CliRunner().invoke(main, args))
    assert path.read_bytes() == before
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # not switched to WAL
    con.close()
