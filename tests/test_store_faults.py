"""The collection store under storage faults, for real: a full disk (a tmpfs filled to the last
byte mid-run), an I/O error (the writer's file-size limit lowered mid-run: EFBIG), a write lock
held by another connection. Each stops `vaar collect` (one process, or worker processes sharing
the store) at once with one line naming the store and the SQLite error and a non-zero exit,
leaves a sound store, and once the fault is gone a rerun ends with the answers of an
uninterrupted run, never asking again a turn that was stored."""

import asyncio
import contextlib
import resource
import sqlite3
import subprocess
import time

import pytest
from fakes.disk import tmpfs  # noqa: F401  (fixture)
from fakes.fake_llm import FakeLLM, Faults
from test_collection_resume import CONCURRENCY, SESSIONS, stored_turns, vaar, write_study
from test_collection_workers import children

from vaar.collection import collect
from vaar.collection.cost import Usage
from vaar.collection.store import BUSY_TIMEOUT, AnswerRow, Store, StoreError, TurnRecord
from vaar.config import load_study
from vaar.data import long_table

TOTAL = SESSIONS * 28  # turns of the study (psa + aods, one item per turn)
AT = 60  # turns stored when the fault strikes
RESUMABLE = "every turn stored so far is kept: fix this and rerun to resume"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The long table of an uninterrupted run (the fake's answers are seeded: any run agrees)."""
    fake = FakeLLM()
    fake.start()
    try:
        tmp = tmp_path_factory.mktemp("reference")
        study = load_study(write_study(tmp / "s.toml", fake.base_url, tmp / "out"))
        return long_table(asyncio.run(collect(study, progress=False)).store_path)
    finally:
        fake.stop()


class DiskFull:
    """The store's tmpfs is filled to the last byte; space comes back by growing the tmpfs."""

    message = "database or disk is full (SQLITE_FULL)"
    stops_within = 2.0

    def __init__(self, request):
        self.disk = request.getfixturevalue("tmpfs")

    def folder(self, tmp_path):
        return self.disk.path

    def strike(self, proc, store):
        self.disk.fill()

    def clear(self):
        self.disk.resize("32m")


class FileSizeLimit:
    """The writer may not grow any file past the WAL's current end: the next commit gets EFBIG
    (Python ignores SIGXFSZ), which SQLite reports as an I/O error. A new process has no limit."""

    message = "disk I/O error (SQLITE_IOERR_WRITE)"
    stops_within = 2.0

    def __init__(self, request):
        pass

    def folder(self, tmp_path):
        return tmp_path / "out"

    def strike(self, proc, store):
        size = (store.parent / f"{store.name}-wal").stat().st_size
        for pid in [proc.pid, *children(proc.pid)]:  # with --workers, the workers write
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (size, size))

    def clear(self):
        pass


class WriteLocked:
    """Another connection holds the write lock beyond the busy timeout, then lets go."""

    message = "database is locked (SQLITE_BUSY)"
    stops_within = BUSY_TIMEOUT + 2.0

    def __init__(self, request):
        self.con = None

    def folder(self, tmp_path):
        return tmp_path / "out"

    def strike(self, proc, store):
        self.con = sqlite3.connect(store, isolation_level=None)
        self.con.execute("BEGIN IMMEDIATE")

    def clear(self):
        self.con.rollback()
        self.con.close()


def stored(store) -> dict:
    """(session, turn) -> (messages, finished) of every stored turn: a turn asked again after
    a resume would come back with another `finished` time."""
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    with contextlib.closing(con):
        rows = con.execute("SELECT session, turn, messages, finished FROM turns").fetchall()
    return {(s, t): (m, f) for s, t, m, f in rows}


def integrity(store) -> str:
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    with contextlib.closing(con):
        return con.execute("PRAGMA integrity_check").fetchone()[0]


@pytest.mark.parametrize("workers", [1, 2], ids=lambda w: f"workers={w}")
@pytest.mark.parametrize("fault", [DiskFull, FileSizeLimit, WriteLocked], ids=lambda f: f.__name__)
def test_a_storage_fault_stops_collect_at_once_and_a_rerun_resumes(
    fault, workers, request, tmp_path, fake_llm, reference
):
    fault = fault(request)
    fake = fake_llm(Faults(latency=0.01))
    folder = fault.folder(tmp_path)
    # a client timeout beyond the busy timeout: requests in flight while SQLite waits on a lock
    # (the event loop waits with it) are not timed out and retried
    study = write_study(tmp_path / "s.toml", fake.base_url, folder, timeout=30)
    store = folder / "collection.sqlite"

    proc = vaar("collect", str(study), "--no-progress", "--workers", str(workers))
    deadline = time.monotonic() + 30
    while stored_turns(store) < AT and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before the fault: slow the fake server down"
    fault.strike(proc, store)
    struck = time.monotonic()
    try:
        out, err = proc.communicate(timeout=fault.stops_within + 10)  # a hang fails here
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    stopped = time.monotonic() - struck
    print(f"{type(fault).__name__}: exit {stopped:.2f} s after the fault")

    assert proc.returncode == 2, out + err
    assert err.splitlines() == [f"error: {store}: {fault.message}; {RESUMABLE}"]
    assert stopped < fault.stops_within
    assert integrity(store) == "ok"
    kept = stored(store)
    assert AT <= len(kept) < TOTAL

    fault.clear()
    proc = vaar("collect", str(study), "--no-progress", "--workers", str(workers))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err
    assert f"o: {SESSIONS}/{SESSIONS} sessions done" in out
    assert integrity(store) == "ok"

    key = ["session", "item"]
    resumed = long_table(store).sort_values(key).reset_index(drop=True)
    assert resumed.equals(reference.sort_values(key).reset_index(drop=True))
    final = stored(store)
    assert {k: final[k] for k in kept} == kept  # every stored turn kept, none asked again
    con = sqlite3.connect(store)
    with contextlib.closing(con):
        attempts = con.execute("SELECT SUM(attempts) FROM turns").fetchone()[0]
    # only requests in flight when the fault struck (at most one per session running) were lost
    assert attempts <= fake.counts["requests"] <= attempts + CONCURRENCY


def test_a_disk_full_before_the_first_turn_is_one_line(tmp_path, tmpfs, fake_llm):  # noqa: F811
    study = write_study(tmp_path / "s.toml", fake_llm().base_url, tmpfs.path / "out")
    tmpfs.fill()
    started = time.monotonic()
    proc = vaar("collect", str(study), "--no-progress")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, out + err
    store = tmpfs.path / "out" / "collection.sqlite"
    (line,) = err.splitlines()
    assert line.startswith(f"error: {store}") and "No space left on device" in line, line
    assert time.monotonic() - started < 10


def _turn(session: str, turn: int) -> dict:
    answer = AnswerRow("psa", f"psa{turn}", 1, "4", 4.0, "ok", 1)
    messages = [{"role": "user", "content": "x" * 2000}, {"role": "assistant", "content": "4"}]
    return {
        "session": session,
        "model": "m",
        "record": TurnRecord(turn, "psa", messages, 500),
        "context": [],
        "request": {},
        "meta": {},
        "usage": Usage(1, 1),
        "cost": 0.0,
        "attempts": 1,
        "answers": [answer],
    }


def test_every_turn_waiting_on_a_failed_group_commit_gets_the_error(tmp_path):
    """SQLite's own page limit (max_page_count) as the fault: the commit of a batch of turns
    fails, each waiting turn raises StoreError, nothing of the batch is stored, no transaction
    is left open; later writes fail at once with the same error (the run stops), and the rerun's
    store commits again."""
    path = tmp_path / "s.sqlite"

    async def write(store, turns):
        return await asyncio.gather(
            *(store.write_turn(**_turn("m/0", t)) for t in turns), return_exceptions=True
        )

    store = Store(path)
    try:
        store.start_session("m/0", "m", 0, 1, "sys", False)
        pages = store.con.execute("PRAGMA page_count").fetchone()[0]
        store.con.execute(f"PRAGMA max_page_count = {pages}")
        failed = asyncio.run(write(store, range(6)))
        assert all(isinstance(e, StoreError) for e in failed), failed
        assert str(failed[0]) == f"{path}: database or disk is full (SQLITE_FULL); {RESUMABLE}"
        assert not store.con.in_transaction
        store.con.execute("PRAGMA max_page_count = 1000000")
        assert asyncio.run(write(store, [7])) == [store.failed] == [failed[0]]
        with pytest.raises(StoreError, match="SQLITE_FULL"):
            store.start_session("m/1", "m", 1, 2, "sys", False)
    finally:
        store.close()
    store = Store(path)  # the rerun
    try:
        assert store.load_turns("m/0") == []
        assert asyncio.run(write(store, range(6))) == [None] * 6
        assert [t.turn for t in store.load_turns("m/0")] == list(range(6))
    finally:
        store.close()
