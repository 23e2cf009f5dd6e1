"""One writer per collection store: a second `vaar collect` or `vaar run` on a store in use is
refused at once with the writer's pid; readers need no lock; the lock is an flock the OS drops
when the writer dies, so after `kill -9` the next run starts and resumes."""

import asyncio
import os
import signal
import time

import pytest
from test_collection_resume import CONCURRENCY, SESSIONS, stored_turns, vaar, write_study

from vaar.collection import collect
from vaar.collection.store import Store, StoreError
from vaar.config import load_study
from vaar.data import long_table


def one_line(proc, timeout):
    out, err = proc.communicate(timeout=timeout)
    lines = err.splitlines()
    assert len(lines) == 1, out + err
    return proc.returncode, lines[0]


def test_a_second_writer_is_refused_with_the_pid_and_kill_9_frees_the_store(tmp_path, fake_llm):
    fake = fake_llm()
    reference = asyncio.run(
        collect(load_study(write_study(tmp_path / "r.toml", fake.base_url, tmp_path / "r")), False)
    )
    fake.faults.latency = 0.5  # a slow provider (the server's, not the study's: same design)
    study = write_study(tmp_path / "s.toml", fake.base_url, tmp_path / "out")
    store = tmp_path / "out" / "collection.sqlite"
    first = vaar("collect", str(study), "--no-progress")
    try:
        deadline = time.monotonic() + 30
        while stored_turns(store) < CONCURRENCY and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.poll() is None
        refusal = f"error: {store} is in use by another vaar process (pid {first.pid})"
        started = time.monotonic()
        second = {c: vaar(c, str(study), "--no-progress") for c in ("collect", "run")}
        export = vaar("export", str(store), "--out", str(tmp_path / "export"))  # a reader
        for command, proc in second.items():
            code, line = one_line(proc, timeout=30)
            waited = time.monotonic() - started
            print(f"{command} refused in {waited:.2f} s (the interpreter's start included)")
            assert code == 2 and line.startswith(refusal), line
            assert waited < 10
        out, err = export.communicate(timeout=60)  # readers need no lock
        assert export.returncode == 0, out + err
        assert first.poll() is None  # the writer was not disturbed
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.communicate()
    kept = stored_turns(store)
    assert CONCURRENCY <= kept < SESSIONS * 28
    fake.faults.latency = 0.0
    third = vaar("collect", str(study), "--no-progress")
    out, err = third.communicate(timeout=60)
    assert third.returncode == 0, out + err
    assert f"o: {SESSIONS}/{SESSIONS} sessions done" in out
    key = ["session", "item"]
    resumed = long_table(store).sort_values(key).reset_index(drop=True)
    assert resumed.equals(long_table(reference.store_path).sort_values(key).reset_index(drop=True))
    assert (store.parent / "collection.sqlite.lock").read_text().strip() == str(third.pid)


def test_the_lock_holds_within_a_process_and_is_released_on_close(tmp_path):
    path = tmp_path / "s.sqlite"
    store = Store(path)
    with pytest.raises(StoreError, match=rf"in use by another vaar process \(pid {os.getpid()}\)"):
        Store(path)
    reader = Store(path, readonly=True)  # readers take no lock
    assert reader.session_status() == {}
    reader.close()
    store.close()
    Store(path).close()  # free again


def test_a_store_that_cannot_be_opened_releases_its_lock(tmp_path):
    path = tmp_path / "s.sqlite"
    path.write_text("not a database\n")
    for _ in range(2):  # the second attempt is refused for the file, not for a held lock
        with pytest.raises(StoreError, match="not an SQLite database"):
            Store(path)
