"""One R worker: a spawned Python process that owns an embedded R and runs one call at a time.

Embedded R is single-threaded and not thread-safe, so R never runs in the server process.
The server talks to the worker over a pipe: ("call", "module:function", kwargs) in;
("progress", stage, fraction)*, then ("ok", result) or ("error", message) out. A worker that
dies (R crash, kill on timeout or cancel) is noticed through its process sentinel, and the
caller gets WorkerLost with the reason.

Defence in depth (docs/service.md, threat model): the spawned process replaces itself at once
(exec) by a fresh interpreter that sees only worker_environment() (what R and Python need; no
API keys, no token) and runs in a private temporary directory that is also its HOME and TMPDIR,
removed when the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_any
from pathlib import Path

from vaar.errors import VaarError

log = logging.getLogger("vaar.service")
_SPAWN = multiprocessing.get_context("spawn")

# All an R worker sees of the server's environment: what R and Python need to run, and the
# vaar settings a job reads. Nothing else (API keys, VAAR_TOKEN, cloud credentials) is passed.
WORKER_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH", "OPENBLAS_NUM_THREADS",
                    "OMP_NUM_THREADS", "VAAR_DEBUG", "VAAR_R_CPUS")  # fmt: skip
WORKER_PREFIXES = ("R_", "LC_")  # R's own configuration (R_HOME, R_LIBS, ...) and the locale


class JobFailed(Exception):
    """The job ran and reported a problem (bad data, a model lavaan cannot fit, ...)."""


class WorkerLost(Exception):
    """The worker process ended while it held a job."""


class JobTimeout(WorkerLost):
    """The job ran past its time limit; the worker was killed."""


class WorkerStartError(Exception):
    """The worker could not start (R or lavaan missing, or it did not answer in time)."""


def _resolve(target: str) -> Callable:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def client_message(exc: BaseException) -> str:
    """What a client may see about an exception: its message, never a traceback."""
    if isinstance(exc, VaarError):
        return str(exc)
    text = str(exc).strip()
    if type(exc).__name__ == "RRuntimeError":  # an R error not translated by vaar.sem
        return "R error: " + " ".join(text.removeprefix("Error in ").split())[:2000]
    return f"internal error in the analysis ({type(exc).__name__}); the server log has details"


def worker_environment(home: str, r_cpus: int | None = None) -> dict[str, str]:
    """The environment of a worker process: WORKER_VARIABLES and WORKER_PREFIXES from the
    server's, HOME and TMPDIR its private directory, its share of the cores."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k in WORKER_VARIABLES or k.startswith(WORKER_PREFIXES)
    }
    env.update(HOME=home, TMPDIR=home)
    env.setdefault("LANG", "C.UTF-8")
    if r_cpus:  # this worker's share of the cores for vaar.sem's forked level fits
        env["VAAR_R_CPUS"] = str(r_cpus)
    return env


def _child_main(conn, warmup: str | None, r_cpus: int | None, home: str) -> None:
    """The spawned process: leave the server's environment behind (exec), then serve."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    os.setpgrp()  # its own process group: R's forked helpers (vaar.sem) end with the worker
    try:
        fd = conn.fileno()
        os.set_inheritable(fd, True)  # the pipe to the server survives the exec
        os.chdir(home)
        package_root = str(Path(__file__).resolve().parents[2])  # the vaar the server runs
        args = [sys.executable, "-I", "-c", _ISOLATED, package_root, str(fd), warmup or ""]
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, args, worker_environment(home, r_cpus))
    except OSError as exc:
        conn.send(("fatal", f"cannot start the isolated R worker: {exc}"))


# -I: no PYTHON* variables, no user site, not the working directory on sys.path
_ISOLATED = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "import vaar.service.worker as w; w._isolated_main()"
)


def _isolated_main() -> None:
    """The worker after the exec: sys.argv is [-c, package root, pipe fd, warm-up]."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _, _, fd, warmup = sys.argv
    _serve(Connection(int(fd)), warmup or None)


def _serve(conn, warmup: str | None) -> None:
    try:
        if warmup:
            _resolve(warmup)()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        traceback.print_exc()
        conn.send(("fatal", client_message(exc)))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the server is gone
        if message[0] == "stop":
            return
        _, target, kwargs = message

        def progress(stage: str, fraction: float) -> None:
            conn.send(("progress", str(stage), float(fraction)))

        try:
            result = _resolve(target)(progress=progress, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure goes back as a message
            if not isinstance(exc, VaarError):
                print(f"[vaar worker {os.getpid()}] {target} failed:", file=sys.stderr)
                traceback.print_exc()
            conn.send(("error", client_message(exc)))
        else:
            conn.send(("ok", result))


def _signal_name(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


def _kill_group(pid: int) -> None:
    """SIGKILL the worker and every process it forked (its process group is its pid)."""
    for kill, target in ((os.killpg, pid), (os.kill, pid)):  # the group; or just the worker
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(target, signal.SIGKILL)


class RWorker:
    """A supervised handle on one worker process; `start()` again after it died."""

    def __init__(
        self, name: str, warmup: str | None = "vaar.service.jobs:warm_up", r_cpus: int | None = None
    ):
        self.name = name
        self.warmup = warmup
        self.r_cpus = r_cpus  # cores its R may fork onto (None: vaar.sem's default)
        self.restarts = -1  # the first start is not a restart
        self.state = "stopped"
        self.last_error: str | None = None
        self._process = None
        self._conn = None
        self._home: str | None = None  # the running worker's private directory
        self._kill_reason: str | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"vaar-{name}")  # blocking waits

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.alive else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    async def start(self, timeout: float = 120.0) -> None:
        """Spawn the process and wait until R is loaded; WorkerStartError if it is not."""
        self.stop()
        self.restarts += 1
        self.state = "starting"
        parent, child = _SPAWN.Pipe()
        self._home = tempfile.mkdtemp(prefix=f"vaar-{self.name}-")  # mode 0700
        process = _SPAWN.Process(
            target=_child_main,
            args=(child, self.warmup, self.r_cpus, self._home),
            name=f"vaar-{self.name}",
            daemon=True,
        )
        process.start()
        child.close()
        self._process, self._conn, self._kill_reason = process, parent, None
        loop = asyncio.get_running_loop()
        try:
            message = await loop.run_in_executor(self._thread, self._next_message, timeout)
        except WorkerLost as exc:
            message = ("fatal", str(exc))
        if message is None or message[0] != "ready":
            reason = f"no answer within {timeout:.0f} s" if message is None else message[1]
            self.stop()
            self.state, self.last_error = "failed", reason
            raise WorkerStartError(reason)
        self.state, self.last_error = "idle", None
        log.info("R worker %s ready (pid %s)", self.name, self.pid)

    def stop(self) -> None:
        if self._process is not None:
            _kill_group(self._process.pid)  # also when the worker died: its forks may live on
            self._process.join(5)
            self._process.close()
            self._conn.close()
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
        self._process = self._conn = self._home = None
        self.state = "stopped"

    def kill(self, reason: str) -> None:
        """End the process now (SIGKILL: R cannot be interrupted safely); the running call
        raises WorkerLost(reason)."""
        if self.alive:
            self._kill_reason = reason
            _kill_group(self._process.pid)

    def close(self) -> None:
        self.stop()
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
        if not self.alive:
            raise WorkerLost("the R worker is not running")
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        self.state = "busy"
        self._conn.send(("call", target, kwargs))
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.kill(f"the job exceeded the time limit of {timeout:g} s")
                    await loop.run_in_executor(self._thread, self._process.join, 5)
                    raise JobTimeout(self._kill_reason)
                message = await loop.run_in_executor(
                    self._thread, self._next_message, min(remaining, 1.0)
                )
                if message is None:
                    continue
                kind = message[0]
                if kind == "progress" and on_progress is not None:
                    on_progress(message[1], message[2])
                elif kind == "ok":
                    return message[1]
                elif kind == "error":
                    raise JobFailed(message[1])
        finally:
            self.state = "idle" if self.alive else "stopped"

    def _next_message(self, timeout: float):
        """Block (in this worker's own thread) until a message, the process's end, or timeout."""
        ready = wait_any([self._conn, self._process.sentinel], timeout)
        if self._conn in ready:
            try:
                return self._conn.recv()
            except (EOFError, OSError):
                pass
        # the sentinel fires only once every holder of the pipe is gone, and R's forks of a
        # worker killed from outside (the OOM killer, kill -9) still hold it: ask the process
        if ready or not self._process.is_alive():
            self._process.join(5)
            how = _signal_name(self._process.exitcode)
            reason = self._kill_reason or f"the R worker process stopped unexpectedly ({how})"
            raise WorkerLost(reason)
        return None
