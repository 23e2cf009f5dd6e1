"""A collection run sharded across worker processes behind the one store.

One event loop asks, parses and stores every turn on one core; with hundreds of sessions in
flight against a fast server their replies come back together and wait for it. `collect` can
therefore run the sessions in W processes, each with its own event loop, providers and
connection to the same SQLite store, each asking a disjoint shard of the sessions with its
share of every model's limits (vaar.collection.shard). Nothing else changes: the process that
asks a turn commits it before its session asks the next (WAL and the busy timeout order the
processes' transactions), so a kill -9 of the parent or of a worker loses only the turns in
flight, and a rerun resumes.

A worker is a new interpreter (nothing of the parent's event loop, connections or threads is
inherited), its job pickled on its stdin. The parent keeps the store's writer lock; a worker
takes none, refuses to start unless its parent holds it (Store(worker_of=parent)), and dies
with its parent (PR_SET_PDEATHSIG; or, without it, at its next report), so no worker writes
once the lock is gone. Workers report
their counters (ModelStats.counts) every REPORT_SECONDS as JSON lines on their stdout; the
parent's are their sums, which the progress display and the summary read. A worker's error
(say, a store that cannot be written) is raised by the parent as the same one-line error; a
worker that dies stops the run with a line naming it. Either way the other workers are
stopped (SIGTERM: they lose only their turns in flight).

How many (`vaar collect --workers N`): by default one process (today's run), unless the run is
live (no --batch), has no --max-cost (one budget, checked turn by turn), talks to HTTP models
only, and keeps AUTO_SESSIONS_PER_WORKER sessions or more in flight per worker on more than
one CPU. An explicit N > 1 with --batch or --max-cost is an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import pickle
import signal
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import vaar
from vaar.collection.shard import Shard
from vaar.collection.store import ReplyCache, Store, StoreError
from vaar.errors import ConfigError, VaarError

AUTO_SESSIONS_PER_WORKER = 128  # sessions in flight that make a worker worth its process
REPORT_SECONDS = 0.5  # how often a worker sends its counters
STOP_SECONDS = 5.0  # how long a stopped worker gets before SIGKILL
CHECKPOINT_SECONDS = 0.5  # how often the parent checkpoints the workers' WAL
ERRORS = {"StoreError": StoreError, "ConfigError": ConfigError}  # raised as themselves


def worker_count(requested: int | None, run, todo: list[list[int]]) -> int:
    """The processes a run uses (see the module's docstring); `todo`: runner.pending()."""
    unfit = "--batch" if run.batch else "--max-cost" if run.max_cost is not None else None
    if requested is not None:
        if requested > 1 and unfit:
            raise VaarError(
                f"--workers {requested} cannot be used with {unfit}: such a run needs one "
                "process (use --workers 1, or leave it out)"
            )
        return requested
    from vaar.collection.providers.http import HttpProvider

    if unfit or not all(isinstance(m.provider, HttpProvider) for m in run.models):
        return 1
    left: dict[str, int] = {}  # sessions to ask per model (across its conditions)
    concurrency: dict[str, int] = {}
    for model, sessions in zip(run.models, todo, strict=True):
        left[model.spec.name] = left.get(model.spec.name, 0) + len(sessions)
        concurrency[model.spec.name] = model.spec.concurrency
    in_flight = sum(min(n, concurrency[name]) for name, n in left.items())
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, in_flight // AUTO_SESSIONS_PER_WORKER))


@dataclass(frozen=True)
class Job:
    """What a worker process needs: the run's arguments and its shard."""

    study: object  # vaar.config.Study
    store: Path
    cache: str | Path | None
    prices: dict
    retry_errors: bool
    shard: Shard
    lookups: bool  # CollectionRun.lookups as the parent found it (before any worker wrote)


# -- the parent ----------------------------------------------------------------------------


class Worker:
    """One worker process as the parent sees it: a new interpreter running main(), its job
    pickled on its stdin, its reports one JSON line each on its stdout."""

    def __init__(self, index: int, process: asyncio.subprocess.Process):
        self.index = index
        self.process = process
        self.counts: list | None = None  # per model of the run: ModelStats.counts()
        self.aborted: list = []  # per model: why it was stopped (a fatal provider error)
        self.done = False

    @classmethod
    async def start(cls, job: Job) -> Worker:
        here = str(Path(vaar.__file__).resolve().parents[1])  # vaar importable as it is here
        path = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from vaar.collection.workers import main; main()",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": path},
            limit=2**24,
        )  # fmt: skip
        process.stdin.write(pickle.dumps(job))
        await process.stdin.drain()
        process.stdin.close()
        return cls(job.shard.index, process)

    async def follow(self, on_counts) -> BaseException | None:
        """Read the worker's reports until it ends; why it stopped the run (None: it
        finished its shard)."""
        while line := await self.process.stdout.readline():
            report = json.loads(line)
            if "error" in report:
                if report["kind"] == "internal":
                    return RuntimeError(report["error"])
                return ERRORS.get(report["kind"], VaarError)(report["error"])
            self.counts, self.aborted = report["counts"], report["aborted"]
            on_counts()
            if report.get("done"):
                self.done = True
                await self.process.wait()
                return None
        code = await self.process.wait()
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited ({code})"
        return VaarError(
            f"collection worker {self.index} (pid {self.process.pid}) {how} before finishing "
            "its sessions; the other workers were stopped and every turn stored so far is "
            "kept: rerun to resume"
        )

    async def stop(self) -> None:
        """Stop a worker that did not finish (it loses only the turns it has in flight)."""
        if self.process.returncode is None and not self.done:
            self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


async def run_workers(run, count: int, store: Path, cache, retry_errors: bool) -> None:
    """Ask the run's sessions in `count` worker processes; the run's counters become the
    sums of theirs. `store`, `cache`: paths as collect() has them (the workers run in this
    folder: their errors name them as here)."""
    workers: list[Worker] = []

    def add_up() -> None:
        if all(w.counts is not None for w in workers):
            for k, model in enumerate(run.models):
                model.stats.set_sums([w.counts[k] for w in workers])
                model.aborted = next((w.aborted[k] for w in workers if w.aborted[k]), None)

    followed = []
    try:
        for index in range(count):
            shard = Shard(index, count)
            work = Job(run.study, store, cache, run.prices, retry_errors, shard, run.lookups)
            workers.append(await Worker.start(work))
        followed = [asyncio.create_task(w.follow(add_up)) for w in workers]
        checkpoints = asyncio.create_task(_checkpoints(run.store))  # ends only by failing
        followed.append(checkpoints)
        running = set(followed)
        while running != {checkpoints}:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.result() is not None:  # (the checkpoints' StoreError raises here)
                    raise task.result()
    finally:
        for task in followed:
            task.cancel()
        for worker in workers:
            await worker.stop()


async def _checkpoints(store) -> None:
    """The workers' WAL into the database now and then, here, where it stalls no session."""
    while True:
        await asyncio.sleep(CHECKPOINT_SECONDS)
        store.checkpoint()


# -- a worker ------------------------------------------------------------------------------


def main() -> None:
    """A worker process: ask the sessions of its shard, report to the parent on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent stops its workers
    with contextlib.suppress(OSError, AttributeError):  # Linux: die with the parent
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    out = os.fdopen(os.dup(1), "w")  # the reports; anything else printed goes to stderr
    os.dup2(2, 1)
    job: Job = pickle.load(sys.stdin.buffer)
    parent = os.getppid()  # the process that holds the store's lock (Store checks it)

    def report(**fields) -> None:
        """To the parent (every REPORT_SECONDS at least); if it is gone, stop at once (where
        PR_SET_PDEATHSIG is missing, this is what keeps a worker from outliving the lock)."""
        if os.getppid() == parent:
            with contextlib.suppress(BrokenPipeError):
                out.write(json.dumps(fields) + "\n")
                out.flush()
                return
        os._exit(1)

    try:
        asyncio.run(_work(job, parent, report))
    except VaarError as exc:
        report(error=str(exc), kind=type(exc).__name__)
    except Exception as exc:  # a bug: the parent reports it as the CLI reports its own
        if os.environ.get("VAAR_DEBUG"):
            traceback.print_exc()
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        where = f"collection worker {job.shard.index}"
        report(error=f"{where}: {type(exc).__name__}: {detail}", kind="internal")


async def _work(job: Job, parent: int, report) -> None:
    from vaar.collection.runner import CollectionRun, pending, run_models  # (runner imports us)

    with contextlib.ExitStack() as opened:
        store = opened.enter_context(contextlib.closing(Store(job.store, worker_of=parent)))
        cache = None
        if job.cache:
            cache = opened.enter_context(contextlib.closing(ReplyCache(job.cache)))
        run = CollectionRun(job.study, store, job.prices, None, cache, shard=job.shard)
        run.lookups = job.lookups
        todo = pending(run, store.session_status(), job.retry_errors)

        def counts(**more) -> None:
            report(
                counts=[m.stats.counts() for m in run.models],
                aborted=[m.aborted for m in run.models],
                **more,
            )

        stop = asyncio.Event()
        reporter = asyncio.create_task(_every(REPORT_SECONDS, counts, stop))
        try:
            for model in run.models:
                await model.provider.start()
            await run_models(run, todo, job.retry_errors)
        finally:
            stop.set()
            await reporter
            for model in run.models:
                await model.provider.close()
    counts(done=True)  # after the store's close: every turn counted is committed


async def _every(seconds: float, call, stop: asyncio.Event) -> None:
    while not stop.is_set():
        call()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)
