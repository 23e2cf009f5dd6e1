"""R workers (vaar.sem.worker.RProcess) behind the concurrent.futures Executor interface:
`RPool` for a caller's own pool (the bootstrap's local refits), `run_in_r_process` for the
calling process's own worker (a Dask worker's tasks, which run on threads)."""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import queue
import threading
from concurrent.futures import Executor, Future

from vaar.errors import VaarError
from vaar.sem.worker import RProcess


class RPool(Executor):
    """`workers` R workers, all started now, behind the Executor interface: submit(fn, *args,
    **kwargs) runs a module-level fn in the next free one. A worker that dies fails its call
    with WorkerLost and is restarted for the next. Each worker's R forks its ladder's levels
    onto its share of the cores only (VAAR_R_CPUS), so the pool never oversubscribes them."""

    def __init__(self, workers: int, *, start_timeout: float = 120.0, name: str = "r"):
        self._start_timeout = start_timeout
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        share = max(1, (os.cpu_count() or 1) // workers)
        self._processes = [RProcess(f"{name}-{i}", r_cpus=share) for i in range(workers)]
        try:
            for process in self._processes:  # spawn all, then wait: they start in parallel
                process.launch()
            for process in self._processes:
                process.wait_ready(start_timeout)
        except BaseException:
            for process in self._processes:
                process.stop()
            raise
        self._threads = [
            threading.Thread(target=self._serve, args=(p,), name=f"vaar-{p.name}", daemon=True)
            for p in self._processes
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new calls after shutdown")
            future: Future = Future()
            self._tasks.put((future, fn, args, kwargs))
        return future

    def _serve(self, process: RProcess) -> None:
        while (task := self._tasks.get()) is not None:
            future, fn, args, kwargs = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                if not process.alive:
                    process.start(self._start_timeout)
                future.set_result(process.call(fn, args, kwargs))
            except BaseException as exc:  # noqa: BLE001 - the caller gets it from the future
                future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if cancel_futures:
            with contextlib.suppress(queue.Empty):
                while True:
                    self._tasks.get_nowait()[0].cancel()
        for _ in self._threads:
            self._tasks.put(None)
        if not wait:
            for process in self._processes:
                process.kill("the pool was shut down")
        for thread in self._threads:
            thread.join()
        for process in self._processes:
            process.stop()


_OWN: RProcess | None = None
_OWN_LOCK = threading.Lock()


def run_in_r_process(fn, *args, **kwargs):
    """Run fn in this process's own R worker (started on first use, one call at a time): for
    callers on threads, such as the tasks of a Dask worker."""
    global _OWN
    if multiprocessing.current_process().daemon:
        raise VaarError(
            "this Dask worker is a daemonic process and cannot start its R process; start the "
            "workers with DASK_DISTRIBUTED__WORKER__DAEMON=False"
        )
    with _OWN_LOCK:
        if _OWN is None:
            _OWN = RProcess("r-own")
            atexit.register(_OWN.stop)
        if not _OWN.alive:
            _OWN.start()
        return _OWN.call(fn, args, kwargs)
