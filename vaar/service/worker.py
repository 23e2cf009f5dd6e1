"""The service's R workers: vaar.sem.worker.RProcess (one supervised R process, isolated, killed
on timeout or cancel; see there) driven from the event loop. Each worker's blocking waits run in
a thread of its own, so a busy worker never holds up the server or the other workers, and a
job's progress reports come back to the loop."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from vaar.sem.worker import (
    WORKER_PREFIXES,
    WORKER_VARIABLES,
    JobFailed,
    JobTimeout,
    RProcess,
    WorkerLost,
    WorkerStartError,
)

log = logging.getLogger("vaar.service")

__all__ = [
    "WORKER_PREFIXES",
    "WORKER_VARIABLES",
    "JobFailed",
    "JobTimeout",
    "RWorker",
    "WorkerLost",
    "WorkerStartError",
]


class RWorker:
    """One R worker for the job queue; `start()` again after it died."""

    def __init__(
        self, name: str, warmup: str | None = "vaar.service.jobs:warm_up", r_cpus: int | None = None
    ):
        self.process = RProcess(name, warmup, r_cpus)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"vaar-{name}")  # blocking waits

    name = property(lambda self: self.process.name)
    pid = property(lambda self: self.process.pid)
    alive = property(lambda self: self.process.alive)
    state = property(lambda self: self.process.state)
    restarts = property(lambda self: self.process.restarts)
    last_error = property(lambda self: self.process.last_error)

    async def start(self, timeout: float = 120.0) -> None:
        """Spawn the process and wait until R is loaded; WorkerStartError if it is not."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self.process.start, timeout)
        log.info("R worker %s ready (pid %s)", self.name, self.pid)

    def stop(self) -> None:
        self.process.stop()

    def kill(self, reason: str) -> None:
        """End the process now; the running call raises WorkerLost(reason)."""
        self.process.kill(reason)

    def close(self) -> None:
        self.process.stop()
        self._thread.shutdown(wait=False, cancel_futures=True)

    async def call(
        self,
        target: str,
        kwargs: dict,
        *,
        timeout: float,
        on_progress: Callable[[str, float], None] | None = None,
    ):
        """Run `target(progress=..., **kwargs)` in the worker and return its result.
        Raises JobFailed, JobTimeout or WorkerLost."""
        loop = asyncio.get_running_loop()
        relay = None
        if on_progress is not None:

            def relay(stage: str, fraction: float) -> None:  # from the waiting thread
                loop.call_soon_threadsafe(on_progress, stage, fraction)

        call = functools.partial(
            self.process.call, target, (), kwargs, timeout=timeout, on_progress=relay
        )
        return await loop.run_in_executor(self._thread, call)
