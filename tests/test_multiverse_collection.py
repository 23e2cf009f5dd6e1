"""Collecting a multiverse study: every (model x variant) is a condition with its own sessions in
the study's store, each variant's settings reach its sessions, the tables carry `model`,
`variant`, `session` (the contract with vaar.multiverse.analysis), runs resume after kill -9
with the answers of an uninterrupted run, and a study without multiverse stores as before."""

import asyncio
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes.fixtures import stored_turns

from vaar.cli import main
from vaar.collection import collect
from vaar.collection.conditions import conditions
from vaar.collection.prompts import extract_items
from vaar.collection.runner import study_fingerprint
from vaar.collection.sessions import derive_seed
from vaar.collection.store import transcripts
from vaar.config import load_study, parse_study
from vaar.data import LONG_COLUMNS, long_table, read_table, wide_table
from vaar.data.export import export_store
from vaar.errors import VaarError
from vaar.instruments import load_instruments
from vaar.multiverse import variant_factors, variant_names

EXAMPLE = Path(__file__).parents[1] / "data/examples/multiverse.toml"
GRID = """
[multiverse]
block_order = ["study", "sharing_first"]
history = ["session", "instrument"]
"""


def write(tmp_path: Path, extra: str = GRID, sessions: int = 3, params: str = "") -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "study.toml"
    path.write_text(
        f'name = "mv"\nseed = 3\nsessions_per_model = {sessions}\n'
        f'instruments = ["psa", "aods"]\noutput_dir = "{tmp_path / "out"}"\n{extra}\n'
        f'[[models]]\nname = "a"\nprovider = "simulated"\nparams = {{ {params} }}\n'
        '[[models]]\nname = "b"\nprovider = "simulated"\nparams = { profile = "reversed" }\n',
        encoding="utf-8",
    )
    return path


def run(path: Path, **kw):
    return asyncio.run(collect(load_study(path), progress=False, **kw))


def test_each_condition_has_its_own_sessions_and_the_tables_carry_the_variant(tmp_path):
    path = write(tmp_path)
    study = load_study(path)
    summary = run(path)
    assert summary.complete, summary.lines()
    names = variant_names(study)
    assert names == ["study.session", "study.instrument", "sharing_first.session",
                     "sharing_first.instrument"]  # fmt: skip
    conditions_ = [f"{m}/{v}" for m in ("a", "b") for v in names]
    assert list(summary.models) == conditions_  # one summary row per condition
    assert all(summary.models[c]["done"] == 3 for c in conditions_)
    long = long_table(summary.store_path)
    assert list(long.columns) == [LONG_COLUMNS[0], "variant", *LONG_COLUMNS[1:]]
    wide = wide_table(long)
    items = [i.id for ins in load_instruments(study.instruments) for i in ins.items]
    assert list(wide.columns) == ["model", "variant", "session", *items]  # the contract
    assert len(wide) == 2 * 4 * 3 and wide["session"].is_unique
    assert set(wide["model"]) == {"a", "b"} and set(wide["variant"]) == set(names)
    assert wide.groupby(["model", "variant"]).size().eq(3).all()
    for row in wide.itertuples():
        assert row.session == f"{row.model}/{row.variant}/{int(row.session[-4:]):04d}"
    assert set(variant_factors(study)) == set(wide["variant"])
    # exported tables read back with their variant column
    out = tmp_path / "export"
    export_store(summary.store_path, out)
    instruments = load_instruments(study.instruments)
    back = read_table(out / "wide.csv", instruments)
    assert (
        list(back.columns) == list(wide.columns)
        and back["variant"].tolist() == wide["variant"].tolist()
    )
    assert list(read_table(out / "long.csv", instruments).columns) == list(long.columns)
    records = list(transcripts(summary.store_path))
    assert {r["variant"] for r in records} == set(names)


def test_each_variant_setting_reaches_its_sessions(tmp_path):
    files = tmp_path / "files"
    files.mkdir(parents=True)
    (files / "formal.txt").write_text("You answer formally.", encoding="utf-8")
    (files / "quick.toml").write_text('aods = "Answer quickly."\n', encoding="utf-8")
    (files / "people.csv").write_text("persona\nA nurse.\nA pilot.\n", encoding="utf-8")
    variants = """
[[variants]]
name = "base"

[[variants]]
name = "changed"
block_order = ["aods", "psa"]
item_order = "fixed"
history = "instrument"
items_per_turn = 4
temperature = 0.7
system_prompt = "files/formal.txt"
instructions = "files/quick.toml"
personas = "files/people.csv"
"""
    path = write(tmp_path, variants, sessions=2)
    summary = run(path)
    assert summary.complete, summary.lines()
    by = {(r["model"], r["variant"], r["index"]): r for r in transcripts(summary.store_path)}
    base, changed = by[("a", "base", 1)], by[("a", "changed", 1)]
    assert changed["system"] == "You answer formally.\n\nA pilot."  # persona index % 2
    assert "You answer formally." not in base["system"]
    assert [t["instrument"] for t in changed["turns"]][:1] == ["aods"]
    assert [t["instrument"] for t in base["turns"]][:1] == ["psa"]
    first = changed["turns"][0]["messages"][0]["content"]
    assert first.startswith("Answer quickly.") and len(extract_items(first)) == 4  # a block
    psa_first = next(t for t in changed["turns"] if t["instrument"] == "psa")
    assert psa_first["context"] == []  # history reset at the instrument
    assert next(t for t in base["turns"] if t["instrument"] == "aods")["context"]  # whole session
    assert len(changed["turns"]) == 3 + 4 and len(base["turns"]) == 12 + 16
    assert changed["turns"][0]["request"]["params"]["temperature"] == 0.7
    assert base["turns"][0]["request"]["params"]["temperature"] is None
    long = long_table(summary.store_path)
    fixed = long[(long["variant"] == "changed") & (long["instrument"] == "psa")]
    for _, session in fixed.groupby("session"):  # item order fixed: ids in instrument order
        assert session.sort_values("position")["item"].tolist() == [
            i.id for i in load_instruments(["psa"])[0].items
        ]


def test_a_study_without_multiverse_keeps_its_session_ids_seeds_and_fingerprint(tmp_path):
    path = write(tmp_path, extra="")
    study = load_study(path)
    summary = run(path)
    long = long_table(summary.store_path)
    assert list(long.columns) == LONG_COLUMNS and list(summary.models) == ["a", "b"]
    con = sqlite3.connect(summary.store_path)
    rows = con.execute("SELECT session, model, idx, seed, variant FROM sessions").fetchall()
    assert sorted(r[0] for r in rows) == [f"{m}/{i:04d}" for m in "ab" for i in range(3)]
    assert all(seed == derive_seed(3, m, i) and v == "" for _, m, i, seed, v in rows)
    instruments = load_instruments(study.instruments)
    plain = conditions(study, instruments, [])
    assert study_fingerprint(study, instruments, [], plain) == study_fingerprint(
        study, instruments, []
    )
    stored = json.loads(con.execute("SELECT value FROM meta WHERE key='config'").fetchone()[0])
    assert "multiverse" not in stored and "variants" not in stored


def test_a_changed_grid_or_file_is_a_different_design(tmp_path):
    path = write(tmp_path, GRID + 'system_prompt = ["p.txt"]\n')
    (tmp_path / "p.txt").write_text("One.", encoding="utf-8")
    assert run(path).complete
    (tmp_path / "p.txt").write_text("Two.", encoding="utf-8")
    with pytest.raises(VaarError, match="different study design"):
        run(path)
    (tmp_path / "p.txt").write_text("One.", encoding="utf-8")
    assert run(path).complete  # the same design again: resumed, nothing to do
    path.write_text(path.read_text().replace('"sharing_first"]', '"sharing_first", "reversed"]'))
    with pytest.raises(VaarError, match="different study design"):
        run(path)


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_answers(tmp_path):
    reference = run(write(tmp_path / "a", sessions=4))
    expected = long_table(reference.store_path)
    path = write(tmp_path / "b", sessions=4, params="latency = 0.004")
    store = tmp_path / "b" / "out" / "collection.sqlite"
    total = len(expected)
    seen: dict = {}
    kills = 0
    for target in (total // 5, total // 2):
        proc = subprocess.Popen(
            [sys.executable, "-c", "from vaar.cli import main; main()", "collect", str(path),
             "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        while proc.poll() is None and len(stored_turns(store)) < target:
            time.sleep(0.02)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.communicate()
        now = stored_turns(store)
        assert all(now[k] == f for k, f in seen.items())  # a stored turn is never asked again
        seen = now
    assert kills == 2, "the run finished before the kills: raise the latency"
    resumed = run(path)
    assert resumed.complete
    after = stored_turns(store)
    assert all(after[k] == f for k, f in seen.items())
    key = ["session", "item"]
    got = long_table(store).sort_values(key).reset_index(drop=True)
    assert expected.sort_values(key).reset_index(drop=True).equals(got)


def test_the_example_multiverse_study_collects_and_honours_the_table_contract(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8")
    text, n = re.subn(r"sessions_per_model = \d+", "sessions_per_model = 2", text)
    text, m = re.subn(r'output_dir = "[^"]*"', f'output_dir = "{tmp_path / "out"}"', text)
    assert n == m == 1
    study = tmp_path / "multiverse.toml"
    study.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["collect", str(study), "--no-progress"])
    assert result.exit_code == 0, result.output
    loaded = load_study(study)
    names = variant_names(loaded)
    assert len(names) >= 6 and len(loaded.models) >= 4
    wide = wide_table(long_table(tmp_path / "out" / "collection.sqlite"))
    assert list(wide.columns[:3]) == ["model", "variant", "session"]
    assert wide.groupby(["model", "variant"]).size().eq(2).all()
    assert len(wide) == 2 * len(names) * len(loaded.models)
    assert set(wide["model"]) == {m.name for m in loaded.models}
    assert set(wide["variant"]) == set(variant_factors(loaded))


def test_dry_run_shows_the_grid_per_variant_and_in_total(tmp_path):
    path = write(tmp_path, GRID + "items_per_turn = [1, 4]\n")
    prices = tmp_path / "prices.toml"
    prices.write_text(
        "[models.a]\ninput = 2.0\noutput = 8.0\n[models.b]\ninput = 1.0\noutput = 4.0\n"
    )
    result = CliRunner().invoke(main, ["collect", str(path), "--dry-run", "--prices", str(prices)])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "out").exists()  # nothing asked, nothing stored
    lines = result.output.strip().splitlines()
    assert lines[0] == "grid: 2 models x 8 variants = 16 conditions"
    pattern = re.compile(
        r"^(\S+): (\d+) conditions, (\d+) sessions, ([\d,]+) calls, ~([\d,]+) prompt .* plain "
        r"\$([\d.,]+), cached"
    )
    rows = {m[1]: m.groups()[1:] for m in map(pattern.match, lines[1:]) if m}
    names = variant_names(load_study(path))
    assert list(rows) == [*names, "total"]
    number = lambda text: float(text.replace(",", ""))  # noqa: E731
    for column in range(5):  # the total is the sum of the variants
        total = number(rows["total"][column])
        assert total == pytest.approx(sum(number(rows[v][column]) for v in names), rel=1e-4)
    assert rows["total"][:2] == ("16", "48")
    # calls per variant are the turns collection asks
    summary = run(path)
    turns = {v: sum(summary.models[f"{m}/{v}"]["turns"] for m in "ab") for v in names}
    assert turns == {v: number(rows[v][2]) for v in names}
    # the history policy shows in the tokens: a reset per instrument sends less
    assert number(rows["study.instrument.1-per-turn"][3]) < number(
        rows["study.session.1-per-turn"][3]
    )


def test_batch_waves_per_condition_store_the_answers_of_a_live_run(tmp_path):
    from tests.fakes.fake_batch import FakeBatchLLM

    def study(url, out):
        return parse_study({
            "name": "mvb", "seed": 2, "sessions_per_model": 3, "instruments": ["westin", "aods"],
            "output_dir": str(tmp_path / out),
            "variants": [{"name": "base"}, {"name": "rev", "block_order": "reversed"}],
            "models": [{"name": "m", "provider": "openai", "model": "fake", "base_url": url,
                        "concurrency": 2, "params": {"max_retries": 2, "backoff_initial": 0.01}}],
        })  # fmt: skip

    def rows(path):
        con = sqlite3.connect(path)
        try:
            return con.execute("SELECT session, item, raw, value, status FROM answers "
                               "ORDER BY session, item").fetchall()  # fmt: skip
        finally:
            con.close()

    with FakeBatchLLM() as fake:
        live = asyncio.run(collect(study(fake.base_url, "live"), progress=False))
    with FakeBatchLLM() as fake:
        batched = asyncio.run(
            collect(study(fake.base_url, "batch"), progress=False, batch=True, batch_poll=0.01)
        )
        assert fake.counts["requests"] == 0
        sizes = [len(b["custom_ids"]) for b in fake.batches]
    assert live.complete and batched.complete, batched.lines()
    assert rows(batched.store_path) == rows(live.store_path)
    assert sizes == [3] * (2 * 15)  # one wave per turn of each condition, its 3 sessions
    con = sqlite3.connect(batched.store_path)
    by_condition = dict(con.execute("SELECT model, COUNT(*) FROM batches GROUP BY model"))
    assert by_condition == {"m/base": 15, "m/rev": 15}


def test_a_store_from_before_variants_is_read_and_resumed(tmp_path):
    path = write(tmp_path, extra="")
    store = run(path).store_path
    con = sqlite3.connect(store)
    first = con.execute("SELECT session FROM sessions ORDER BY rowid LIMIT 1").fetchone()[0]
    with con:
        con.execute("ALTER TABLE sessions DROP COLUMN variant")  # as an older vaar made it
        con.execute("DELETE FROM turns WHERE session=? AND turn>=20", (first,))
        con.execute("DELETE FROM answers WHERE session=? AND turn>=20", (first,))
        con.execute("UPDATE sessions SET status='running' WHERE session=?", (first,))
    con.close()

    def columns():
        return [r[1] for r in sqlite3.connect(store).execute("PRAGMA table_info(sessions)")]

    long = long_table(store)  # a reader sees the column's default, and changes nothing
    assert list(long.columns) == LONG_COLUMNS and "variant" not in columns()
    assert all("variant" not in record for record in transcripts(store))
    resumed = run(path)  # the writer adds the column, then resumes
    assert resumed.complete and columns()[-1] == "variant"
    assert len(long_table(store)) == 2 * 3 * 28
