"""The one way vaar runs R elsewhere (vaar.sem.worker, vaar.sem.pool), exercised without R: the
workers run plain Python functions, so each case takes a second or less. R inside them is
covered by test_alignment_bootstrap.py (refits), test_sem_ladder.py (a fit) and the service's
tests (jobs, timeouts, kills)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import CancelledError
from pathlib import Path

import pytest

from vaar.instruments import load_instrument
from vaar.sem.pool import RPool, run_in_r_process
from vaar.sem.worker import JobFailed, RProcess, WorkerLost, WorkerStartError


@pytest.fixture(scope="module")
def pool():
    with RPool(2, name="test") as p:
        yield p


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (ended, not yet reaped by its parent) has ended too
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def wait_gone(pids, seconds: float = 10) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


def test_calls_run_in_other_processes_and_return_their_results(pool):
    pids = {pool.submit(os.getpid).result(timeout=30) for _ in range(8)}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert pool.submit(divmod, 17, 5).result(timeout=30) == (3, 2)
    assert pool.submit(sorted, [3, 1, 2], reverse=True).result(timeout=30) == [3, 2, 1]
    futures = [pool.submit(pow, 2, k) for k in range(20)]
    assert [f.result(timeout=30) for f in futures] == [2**k for k in range(20)]


@pytest.mark.parametrize(
    ("fn", "args", "message"),
    [
        # a VaarError's own one-line message
        (load_instrument, ("no_such",), "unknown instrument 'no_such'"),
        # anything else: its type only, never a traceback
        (divmod, (1, 0), "internal error in the analysis (ZeroDivisionError)"),
        (int, ("x",), "internal error in the analysis (ValueError)"),
    ],
)
def test_a_failing_call_raises_jobfailed_with_a_clean_message(pool, fn, args, message):
    with pytest.raises(JobFailed) as caught:
        pool.submit(fn, *args).result(timeout=30)
    assert message in str(caught.value) and "Traceback" not in str(caught.value)


@pytest.mark.parametrize(
    ("fn", "args", "how"),
    [(os._exit, (3,), "exited with code 3"), (os.kill, (0, signal.SIGKILL), "signal SIGKILL")],
)
def test_a_worker_that_dies_fails_its_call_and_is_restarted(fn, args, how):
    with RPool(1) as pool:
        before = pool.submit(os.getpid).result(timeout=30)
        with pytest.raises(WorkerLost, match=f"stopped unexpectedly .*{how}"):
            pool.submit(fn, *args).result(timeout=30)
        after = pool.submit(os.getpid).result(timeout=30)
    assert after != before and wait_gone([before, after]) == []


def test_workers_see_a_minimal_environment_in_a_private_directory(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-canary")  # only WORKER_VARIABLES/PREFIXES pass
    with RPool(1) as pool:
        home = pool.submit(os.getenv, "HOME").result(timeout=30)
        assert Path(home).is_dir() and home != os.environ.get("HOME")
        assert pool.submit(os.getcwd).result(timeout=30) == home
        assert pool.submit(os.getenv, "TMPDIR").result(timeout=30) == home
        assert pool.submit(os.getenv, "OPENAI_API_KEY").result(timeout=30) is None
        assert pool.submit(os.getenv, "PATH").result(timeout=30) == os.environ["PATH"]
    assert not Path(home).exists()  # removed with its worker


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_each_worker_forks_its_levels_onto_its_share_of_the_cores(workers, monkeypatch):
    """The ladder forks one R per level onto $VAAR_R_CPUS cores (vaar.sem.ladder.r_cpus):
    a pool's workers together never ask for more than the machine's cores (at least one each)."""
    from vaar.sem.ladder import r_cpus

    monkeypatch.delenv("VAAR_R_CPUS", raising=False)
    cores = os.cpu_count() or 1
    with RPool(workers) as pool:
        shares = {pool.submit(r_cpus).result(timeout=30) for _ in range(3 * workers)}
    assert shares == {max(1, cores // workers)}


def test_shutdown_cancels_what_has_not_started_and_stops_every_worker():
    pool = RPool(1)
    pid = pool.submit(os.getpid).result(timeout=30)
    running = pool.submit(time.sleep, 1)
    while not running.running():
        time.sleep(0.01)
    queued = [pool.submit(time.sleep, 5) for _ in range(3)]
    pool.shutdown(cancel_futures=True)
    assert running.result() is None  # the running call finished
    for future in queued:
        with pytest.raises(CancelledError):
            future.result()
    assert wait_gone([pid]) == []
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(os.getpid)


def test_a_call_past_its_time_limit_kills_the_worker():
    worker = RProcess("timeout")
    worker.start(timeout=30)
    try:
        pid = worker.pid
        started = time.monotonic()
        with pytest.raises(WorkerLost, match="exceeded the time limit of 0.5 s"):
            worker.call(time.sleep, (30,), timeout=0.5)
        assert time.monotonic() - started < 10 and wait_gone([pid]) == []
        assert worker.state == "stopped" and not worker.alive
        worker.start(timeout=30)  # and it starts again
        assert worker.call(os.getpid) == worker.pid != pid
    finally:
        worker.stop()


def test_a_warm_up_that_fails_is_a_start_error_with_its_message():
    worker = RProcess("bad-warm-up", warmup="vaar.no_such_module:warm_up")
    with pytest.raises(WorkerStartError, match=r"internal error .*\(ModuleNotFoundError\)"):
        worker.start(timeout=30)
    assert worker.state == "failed" and not worker.alive


def test_run_in_r_process_keeps_one_worker_per_process():
    first = run_in_r_process(os.getpid)
    assert first != os.getpid()
    assert {run_in_r_process(os.getpid) for _ in range(5)} == {first}


PARENT = """
import os, subprocess, sys
from vaar.sem.pool import RPool
pool = RPool(1)
print(pool.submit(os.getpid).result(), flush=True)
if sys.argv[1] == "busy":  # a child of the worker, as R's forks are
    pool.submit(subprocess.run, ["sleep", "120"])
sys.stdin.read()
"""


@pytest.mark.parametrize("busy", [True, False])
def test_a_worker_and_its_children_end_when_its_parent_is_killed(busy):
    code = [sys.executable, "-c", PARENT, "busy" if busy else "idle"]
    parent = subprocess.Popen(code, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        children = Path(f"/proc/{worker}/task/{worker}/children")
        forks: list[int] = []
        for _ in range(200 if busy else 0):
            if forks := [int(p) for p in children.read_text().split()]:
                break
            time.sleep(0.05)
        assert bool(forks) == busy
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_gone([worker, *forks]) == []
    finally:
        parent.kill()
        parent.wait()
