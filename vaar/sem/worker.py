"""A dedicated R process for servers and bootstraps: embedded R is single-threaded and not
thread-safe, so fits run in one spawned worker process (R and lavaan loaded once, reused for
every job) instead of in the caller's threads."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor

_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None


def _warm() -> str:
    from vaar.sem import bridge

    return str(bridge.call("vaar_parse", "f =~ a + b").get("ov"))


def _run(function: str, args: tuple, kwargs: dict):
    import vaar.sem

    return getattr(vaar.sem, function)(*args, **kwargs)


def pool() -> ProcessPoolExecutor:
    """The shared single-process pool (created on first use, spawn context)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return _pool


def submit(function: str, *args, **kwargs) -> Future:
    """Run vaar.sem.<function>(*args, **kwargs) in the R worker; e.g.
    `submit("fit_ladder", data, syntax, "model").result()` gives a SemResult."""
    return pool().submit(_run, function, args, kwargs)


def warm_up() -> None:
    """Start R and load lavaan in the worker now, so the first real job does not wait."""
    pool().submit(_warm).result()


def shutdown() -> None:
    global _pool
    with _lock:
        if _pool is not None:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None
