"""Where bootstrap refits run: local R workers by default, a Dask cluster on request.

Embedded R is single-threaded, so every refit runs in an R worker (vaar.sem.worker: a process
that owns its own R). Locally that is an RPool of them. Dask runs tasks on worker *threads*, so
each Dask worker process hands its tasks to its own R worker (run_in_r_process); that needs
non-daemonic Dask workers (DASK_DISTRIBUTED__WORKER__DAEMON=False).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager

from vaar.errors import VaarError
from vaar.sem.pool import RPool, run_in_r_process


@contextmanager
def refit_executor(
    scheduler: str | None = None, workers: int | None = None, *, timeout: float = 10
) -> Iterator[Executor]:
    """An Executor for refit jobs: `scheduler` (a Dask address such as tcp://127.0.0.1:8786,
    reached within `timeout` seconds) uses that cluster; otherwise `workers` local R workers
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
        pool = RPool(workers or os.cpu_count() or 1, name="refit")
        try:
            yield pool
        finally:
            pool.shutdown(cancel_futures=True)


class _DaskExecutor(Executor):
    """Submit to Dask, but run each job in the Dask worker's own R process (see module doc)."""

    def __init__(self, client):
        self._executor = client.get_executor(pure=False)

    def submit(self, fn, /, *args, **kwargs):
        return self._executor.submit(run_in_r_process, fn, *args, **kwargs)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._executor.shutdown(wait=wait)
