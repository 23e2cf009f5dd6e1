"""The job queue: one asyncio queue feeding N supervised R workers, plus one small R process
that lets lavaan parse a model (once vaar's allow-list has accepted it) before a job is queued,
so bad models get a 4xx, not a failed job.

A worker that dies is restarted at once; the job it held fails with the reason (crash,
time limit, or cancelled by the client). Jobs live in the JobStore, so the queue only holds ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from vaar.service.settings import ServiceSettings
from vaar.service.store import CANCELLED, DONE, FAILED, QUEUED, RUNNING, JobStore
from vaar.service.worker import JobFailed, RWorker, WorkerLost, WorkerStartError

log = logging.getLogger("vaar.service")

JOB_FUNCTION = "vaar.service.jobs:run_job"
CHECK_FUNCTION = "vaar.service.jobs:check_model"
WARMUP = "vaar.service.jobs:warm_up"
CANCELLED_REASON = "cancelled by the client"


@dataclass
class Slot:
    worker: RWorker
    job_id: str | None = None
    jobs_done: int = 0


class JobRunner:
    def __init__(
        self,
        settings: ServiceSettings,
        store: JobStore,
        *,
        job_function: str = JOB_FUNCTION,
        warmup: str | None = WARMUP,
    ):
        self.settings = settings
        self.store = store
        self.job_function = job_function
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        share = max(1, (os.cpu_count() or 1) // settings.workers)  # no oversubscribed cores
        self.slots = [
            Slot(RWorker(f"worker-{i}", warmup, r_cpus=share)) for i in range(settings.workers)
        ]
        self.checker = RWorker("checker", warmup)
        self._check_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []

    def job_dir(self, job_id: str) -> Path:
        return self.settings.jobs_dir / job_id

    # lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        failed, queued = self.store.recover()
        for job_id in failed:
            log.warning("job %s was running when the server stopped: marked failed", job_id)
        for job_id in queued:
            self.queue.put_nowait(job_id)
        self._tasks = [asyncio.create_task(self._serve(slot)) for slot in self.slots]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for slot in self.slots:
            slot.worker.close()
        self.checker.close()

    # jobs ----------------------------------------------------------------------------------
    def submit(self, job_id: str) -> None:
        self.queue.put_nowait(job_id)

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False when it had already finished."""
        if not self.store.finish(job_id, CANCELLED, error=CANCELLED_REASON):
            return False
        for slot in self.slots:
            if slot.job_id == job_id:
                slot.worker.kill(CANCELLED_REASON)  # its worker restarts; the queue goes on
        return True

    async def _ensure_worker(self, worker: RWorker) -> None:
        if not worker.alive:
            await worker.start(self.settings.worker_start_timeout)

    async def _serve(self, slot: Slot) -> None:
        backoff = 1.0
        while True:
            if not slot.worker.alive:  # start (or restart) before taking a job: warm R
                try:
                    await self._ensure_worker(slot.worker)
                    backoff = 1.0
                except WorkerStartError as exc:
                    log.error("R worker %s could not start: %s", slot.worker.name, exc)
                    await self._fail_next(f"the R worker could not start: {exc}")
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 30.0)
                    continue
            job_id = await self.queue.get()
            if not self.store.start(job_id):
                continue  # cancelled while it waited
            slot.job_id = job_id
            try:
                await self._run(slot, job_id)
            finally:
                slot.job_id = None
                slot.jobs_done += 1

    async def _fail_next(self, reason: str) -> None:
        """With no working R, tell the next client why rather than leave its job queued."""
        job_id = await self.queue.get()
        if self.store.start(job_id):
            self.store.finish(job_id, FAILED, error=reason)

    async def _run(self, slot: Slot, job_id: str) -> None:
        job = self.store.get(job_id)
        try:
            summary = await slot.worker.call(
                self.job_function,  # absolute: the worker runs in a directory of its own
                {"job_dir": str(self.job_dir(job_id).resolve()), "spec": job.spec},
                timeout=self.settings.job_timeout,
                on_progress=lambda stage, fraction: self.store.set_progress(
                    job_id, stage, fraction
                ),
            )
        except JobFailed as exc:
            self.store.finish(job_id, FAILED, error=str(exc))
        except WorkerLost as exc:
            # a cancelled job is already marked; anything else failed with the reason
            if self.store.finish(job_id, FAILED, error=f"{exc}; the worker was restarted"):
                log.warning("job %s failed: %s", job_id, exc)
        else:
            if not self.store.finish(job_id, DONE, summary=summary):
                log.info("job %s finished after it was cancelled; result kept", job_id)

    def remove(self, job_id: str) -> None:
        """Delete a finished job and its files."""
        self.store.delete(job_id)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    # checks before queuing -----------------------------------------------------------------
    async def check(self, kwargs: dict, timeout: float = 60.0):
        """Run a quick check in the checker process: lavaan's own parse of a model that has
        already passed the allow-list (vaar.sem.grammar, in the server); JobFailed if the
        input is bad."""
        async with self._check_lock:
            try:
                await self._ensure_worker(self.checker)
                return await self.checker.call(CHECK_FUNCTION, kwargs, timeout=timeout)
            except WorkerStartError as exc:
                raise WorkerLost(f"the R syntax checker could not start: {exc}") from None

    # health --------------------------------------------------------------------------------
    def health(self) -> dict:
        counts = self.store.counts()
        workers = [
            {
                "name": slot.worker.name,
                "pid": slot.worker.pid,
                "state": slot.worker.state,
                "job": slot.job_id,
                "restarts": max(slot.worker.restarts, 0),
                "jobs_done": slot.jobs_done,
                "last_error": slot.worker.last_error,
            }
            for slot in self.slots
        ]
        ready = any(w["state"] in ("idle", "busy") for w in workers)
        return {
            "status": "ok" if ready else "starting",
            "queued": counts.get(QUEUED, 0),
            "running": counts.get(RUNNING, 0),
            "jobs": counts,
            "workers": workers,
            "checker": {"pid": self.checker.pid, "state": self.checker.state},
        }
