"""Where bootstrap refits run: local worker processes by default, a Dask cluster on request.

Embedded R is single-threaded, so every refit must run on the main thread of a process that
owns its own R. Local workers are spawned processes (one R each). Dask runs tasks on worker
*threads*, so each Dask worker process hands its tasks to one spawned child that owns R;
that needs non-daemonic Dask workers (DASK_DISTRIBUTED__WORKER__DAEMON=False).

(Starting R changes LD_LIBRARY_PATH; `vaar.sem.bridge` puts it back, so processes started
after R load their own libpython.)
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager

from vaar.errors import VaarError

_R_POOL: ProcessPoolExecutor | None = None
_R_POOL_LOCK = threading.Lock()


def _die_with_parent() -> None:
    """Worker initializer: a daemon thread ends this process once its parent is gone, so R
    workers are not orphaned when a Dask worker is killed or the main process crashes.
    (Polling, not PR_SET_PDEATHSIG: that fires when the spawning *thread* ends.)"""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="vaar-parent-watch", daemon=True).start()


def _spawn_pool(workers: int) -> ProcessPoolExecutor:
    """Spawned (not forked: R cannot be forked safely) worker processes, all started now."""
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_die_with_parent,
    )
    for future in [pool.submit(os.getpid) for _ in range(workers)]:
        future.result()
    return pool


@contextmanager
def refit_executor(
    scheduler: str | None = None, workers: int | None = None, *, timeout: float = 10
) -> Iterator[Executor]:
    """An Executor for refit jobs: `scheduler` (a Dask address such as tcp://127.0.0.1:8786,
    reached within `timeout` seconds) uses that cluster; otherwise `workers` local processes
    (default: one per core)."""
    if scheduler:
        try:
            from distributed import Client
        except ImportError:
            raise VaarError("a Dask scheduler was given but 'distributed' is not installed "
                            "(pip install 'vaar[dask]')") from None  # fmt: skip
        try:
            client = Client(scheduler, timeout=timeout)
        except OSError as exc:
            raise VaarError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        try:
            yield _DaskExecutor(client)
        finally:
            client.close()
    else:
        pool = _spawn_pool(workers or os.cpu_count() or 1)
        try:
            yield pool
        finally:
            pool.shutdown(cancel_futures=True)


class _DaskExecutor(Executor):
    """Submit to Dask, but run each job in the worker's own R process (see module doc)."""

    def __init__(self, client):
        self._executor = client.get_executor(pure=False)

    def submit(self, fn, /, *args, **kwargs):
        return self._executor.submit(run_in_r_process, fn, *args, **kwargs)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._executor.shutdown(wait=wait)


def run_in_r_process(fn, *args, **kwargs):
    """Run fn in this process's single spawned R child (created on first use)."""
    global _R_POOL
    if multiprocessing.current_process().daemon:
        raise VaarError(
            "this Dask worker is a daemonic process and cannot start its R process; start the "
            "workers with DASK_DISTRIBUTED__WORKER__DAEMON=False"
        )
    with _R_POOL_LOCK:
        if _R_POOL is None:
            _R_POOL = _spawn_pool(1)
    return _R_POOL.submit(fn, *args, **kwargs).result()
