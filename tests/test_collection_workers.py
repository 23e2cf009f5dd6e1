"""Collection sharded across worker processes (vaar.collection.workers), for real: worker
processes on one SQLite store against the loopback fake. The stored answers, turns and counts
are those of one process; kill -9 of the parent or of a worker loses only turns in flight and
a rerun resumes to the uninterrupted answers; a second vaar is still refused; a worker needs
its parent's lock; runs that cannot be sharded say so in one line."""

import asyncio
import contextlib
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from fakes.fake_llm import Faults
from test_collection_resume import stored_turns, vaar

from vaar.collection import collect
from vaar.collection.runner import CollectionRun, pending
from vaar.collection.shard import Shard
from vaar.collection.store import Store, StoreError
from vaar.collection.workers import worker_count
from vaar.config import parse_study
from vaar.data import long_table
from vaar.errors import VaarError

MODELS = {"a": 4, "b": 1}  # name -> concurrency: b's sessions all go to one worker
SESSIONS = 8
PARAMS = {"timeout": 10, "backoff_initial": 0.01, "backoff_max": 0.05}


def study(tmp_path: Path, url, sessions: int = SESSIONS, models=MODELS, **over):
    """`url` None: simulated models."""
    http = {"provider": "openai", "base_url": url, "params": PARAMS} if url else {}
    raw = {
        "name": "w",
        "seed": 3,
        "sessions_per_model": sessions,
        "instruments": ["psa", "aods"],
        "output_dir": str(tmp_path),
        "models": [
            {"name": name, "provider": "simulated", "concurrency": concurrency, **http}
            for name, concurrency in models.items()
        ],
    }
    return parse_study({**raw, **over})


def turns(store: Path) -> dict:
    """(session, turn) -> everything stored of the turn but its time."""
    con = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    with contextlib.closing(con):
        rows = con.execute(
            "SELECT session, turn, instrument, context, messages, request, prompt_tokens, "
            "completion_tokens, attempts FROM turns"
        ).fetchall()
    return {(r[0], r[1]): r[2:] for r in rows}


def ordered(store: Path):
    key = ["session", "item"]
    return long_table(store).sort_values(key).reset_index(drop=True)


def test_shards_deal_out_every_session_once_and_split_the_limits():
    for count in range(1, 6):
        for concurrency in range(1, 10):
            shards = [Shard(i, count) for i in range(count)]
            owners = [[s.index for s in shards if s.owns(i, concurrency)] for i in range(40)]
            assert all(len(o) == 1 for o in owners)
            assert sum(s.concurrency(concurrency) for s in shards) == concurrency
            assert sum(s.fraction(concurrency) for s in shards) == pytest.approx(1)
            for s in shards:  # a worker with sessions of a model can have one in flight
                if any(s.owns(i, concurrency) for i in range(40)):
                    assert s.concurrency(concurrency) >= 1


def test_workers_store_exactly_what_one_process_stores(tmp_path, fake_llm, capsys):
    one = asyncio.run(collect(study(tmp_path / "one", fake_llm().base_url), workers=1))
    capsys.readouterr()
    fake = fake_llm()  # a fresh one: its prompt cache as new as the first run's
    three = asyncio.run(collect(study(tmp_path / "three", fake.base_url), workers=3))
    progress = capsys.readouterr().out.splitlines()

    assert (one.workers, three.workers) == (1, 3)
    assert three.complete, three.lines()
    assert ordered(three.store_path).equals(ordered(one.store_path))
    assert turns(three.store_path) == turns(one.store_path)  # history, requests, tokens
    assert len(turns(three.store_path)) == 2 * SESSIONS * 28  # every turn once
    assert fake.counts["requests"] == 2 * SESSIONS * 28  # and asked once
    assert fake.counts["max_in_flight"] <= sum(MODELS.values())  # the limits held overall
    assert three.models == one.models  # the summary: sessions, answers, tokens, retries, ...
    # the progress display summed the workers' counters
    for name in MODELS:
        (last,) = [line for line in progress if line.startswith(f"{name}: ")][-1:]
        assert last.startswith(f"{name}: sessions {SESSIONS}/{SESSIONS} done, 0 failed; turns 224")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            if (
                entry.name.isdigit()
                and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid
            ):
                found.append(int(entry.name))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def write_toml(path: Path, s) -> Path:
    models = "".join(
        f'[[models]]\nname = "{m.name}"\nprovider = "openai"\nbase_url = "{m.base_url}"\n'
        f"concurrency = {m.concurrency}\n"
        "params = { timeout = 10, backoff_initial = 0.01, backoff_max = 0.05 }\n\n"
        for m in s.models
    )
    path.write_text(
        f'name = "w"\nseed = 3\nsessions_per_model = {s.sessions_per_model}\n'
        f'instruments = ["psa", "aods"]\noutput_dir = "{s.output_dir}"\n\n{models}'
    )
    return path


def started(proc, store: Path, at_least: int) -> None:
    deadline = time.monotonic() + 30
    while stored_turns(store) < at_least and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)


def test_kill_9_of_a_worker_or_the_parent_then_resume_gives_the_uninterrupted_answers(
    tmp_path, fake_llm
):
    reference = asyncio.run(collect(study(tmp_path / "ref", fake_llm().base_url), False))
    fake = fake_llm(Faults(latency=0.02))
    s = study(tmp_path / "out", fake.base_url)
    toml = write_toml(tmp_path / "s.toml", s)
    store = tmp_path / "out" / "collection.sqlite"

    # a worker killed: the run stops with one line naming it; the other worker is stopped
    first = vaar("collect", str(toml), "--no-progress", "--workers", "2")
    started(first, store, 20)
    workers = children(first.pid)
    assert len(workers) == 2, workers
    os.kill(workers[1], signal.SIGKILL)
    out, err = first.communicate(timeout=30)
    assert first.returncode == 2, out + err
    assert err.splitlines() == [
        f"error: collection worker 1 (pid {workers[1]}) was killed by SIGKILL before finishing "
        "its sessions; the other workers were stopped and every turn stored so far is kept: "
        "rerun to resume"
    ]
    assert not any(alive(pid) for pid in workers)
    kept = turns(store)
    assert 20 <= len(kept) < 2 * SESSIONS * 28

    # the parent killed: its workers die with it, the lock is free, nothing is lost
    second = vaar("collect", str(toml), "--no-progress", "--workers", "2")
    started(second, store, len(kept) + 20)
    workers = children(second.pid)
    fake.faults.latency = 5.0  # the run waits on its replies meanwhile
    refused = vaar("collect", str(toml), "--no-progress")  # one writer still: the parent
    out, err = refused.communicate(timeout=30)
    assert refused.returncode == 2
    assert err.splitlines() == [
        f"error: {store} is in use by another vaar process (pid {second.pid}): wait for it to "
        "finish or stop it"
    ]
    os.kill(second.pid, signal.SIGKILL)
    fake.faults.latency = 0.02
    second.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not any(alive(pid) for pid in workers), "a worker outlived its parent"
    assert len(turns(store)) > len(kept)

    last = vaar("collect", str(toml), "--no-progress", "--workers", "2")
    out, err = last.communicate(timeout=60)
    assert last.returncode == 0, out + err
    assert f"a: {SESSIONS}/{SESSIONS} sessions done" in out and "2 worker processes" in out
    final = turns(store)
    assert {k: final[k] for k in kept} == kept  # stored turns were never asked again
    assert final == turns(reference.store_path)
    assert ordered(store).equals(ordered(reference.store_path))
    requests = sum(a for *_, a in final.values())
    # lost: only requests in flight at the two kills, at most one per session in flight
    assert requests <= fake.counts["requests"] <= requests + 2 * sum(MODELS.values())


def test_a_worker_writes_only_while_its_parent_holds_the_lock(tmp_path):
    path = tmp_path / "s.sqlite"
    Store(path).close()  # a store, its lock free
    with pytest.raises(StoreError, match="no vaar process holds the store's lock"):
        Store(path, worker_of=os.getpid())
    holder = Store(path)
    try:
        worker = Store(path, worker_of=os.getpid())  # its parent (here: this process) holds it
        assert worker.session_status() == {}
        worker.close()
        with pytest.raises(
            StoreError, match=rf"in use by another vaar process \(pid {os.getpid()}"
        ):
            Store(path, worker_of=1)  # a worker of another process
    finally:
        holder.close()


def test_runs_that_cannot_be_sharded_say_so_or_stay_in_one_process(tmp_path, monkeypatch):
    url = "http://127.0.0.1:9/v1"  # never asked
    s = study(tmp_path / "a", url)
    prices = {"a": {"input": 1.0, "output": 1.0}}
    for flag, option in (("--batch", {"batch": True}), ("--max-cost", {"max_cost": 1.0})):
        with pytest.raises(VaarError, match=f"^--workers 2 cannot be used with {flag}: such a"):
            asyncio.run(collect(s, False, workers=2, prices=prices, **option))

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})

    def auto(s, **run):
        with contextlib.closing(Store(s.out_path / "c.sqlite")) as store:
            run = CollectionRun(s, store, {}, run.get("max_cost"), batch=run.get("batch", False))
            return worker_count(None, run, pending(run, {}, False))

    big = {"a": 256, "b": 256}
    assert auto(study(tmp_path / "b", url, 300, big)) == 4  # 512 in flight, 4 CPUs
    assert auto(study(tmp_path / "c", url, 300, {"a": 256})) == 2
    assert auto(study(tmp_path / "d", url, 100, big)) == 1  # 200 sessions: 1 per 128 in flight
    assert auto(study(tmp_path / "e", url, 300, {"a": 100})) == 1
    assert auto(study(tmp_path / "f", url, 300, big), batch=True) == 1
    assert auto(study(tmp_path / "g", url, 300, big), max_cost=5.0) == 1
    assert auto(study(tmp_path / "h", None, 300, big)) == 1  # simulated: one process is enough


def test_a_fatal_provider_error_in_the_workers_is_the_summary_line_of_one_process(
    tmp_path, fake_llm
):
    fake = fake_llm(Faults(status=401))
    one = asyncio.run(collect(study(tmp_path / "one", fake.base_url), False, workers=1))
    two = asyncio.run(collect(study(tmp_path / "two", fake.base_url), False, workers=2))
    assert not two.complete
    assert two.incomplete == one.incomplete
    assert any("refused the API key (HTTP 401)" in line for line in two.incomplete)
