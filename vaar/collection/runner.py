"""Collection: run every session of every model against its provider and store each turn.

Sessions of a model run in parallel (at most ModelSpec.concurrency in flight; requests and
tokens per minute limited with aiolimiter); turns within a session run in sequence. Each
completed turn is committed to the store at once, so a rerun resumes exactly where a crash or
kill -9 stopped: finished sessions are skipped, started ones continue with their next turn.

Here: the run (stores, models in parallel, budget, progress, summary). One model's requests and
sessions: vaar.collection.model_run; one turn's asking and re-asking: vaar.collection.turn; the
sessions in several processes sharing the store: vaar.collection.workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from pathlib import Path

from vaar.collection.conditions import conditions
from vaar.collection.model_run import ModelRun
from vaar.collection.progress import show_progress
from vaar.collection.providers import check_params
from vaar.collection.sessions import load_personas, plan_session
from vaar.collection.shard import Shard
from vaar.collection.store import STORE_FILE, ReplyCache, Store
from vaar.collection.summary import CollectionSummary
from vaar.collection.workers import run_workers, worker_count
from vaar.errors import VaarError
from vaar.instruments import load_instruments


def study_fingerprint(study, instruments, personas: list[str], runs=()) -> str:
    """What must not change between runs writing into the same store; `runs`: the conditions
    of a multiverse study (a study without one keeps its fingerprint)."""
    design = {
        "seed": study.seed,
        "models": [m.model_dump(mode="json") for m in study.models],
        "instruments": [[i.id, i.content_hash] for i in instruments],
        "session": study.session.model_dump(mode="json"),
        "personas": personas,
    }
    if any(c.variant for c in runs):
        design["conditions"] = [c.design() for c in runs]
    return hashlib.sha256(json.dumps(design, sort_keys=True).encode()).hexdigest()


class CollectionRun:
    def __init__(
        self, study, store, prices, max_cost, cache=None, batch=False, batch_poll=None,
        shard=None,
    ):  # fmt: skip
        self.study = study
        self.prices = prices  # model -> price (vaar.collection.cost.load_prices)
        self.shard = shard or Shard()  # the sessions this process asks (all but in a worker)
        self.batch = batch  # models with a batch API send their requests in waves
        self.batch_poll = batch_poll  # seconds between polls (None: the default)
        self.store = store
        self.cache = cache  # a shared ReplyCache, else the store's own cache table
        # replies can be found only in a shared cache or from earlier runs: a run's own
        # requests all differ (by session, seed, turn), so an empty table is not looked up
        self.lookups = cache is not None or store.holds_replies()
        self.instruments = load_instruments(study.instruments)
        self.instrument_hashes = {i.id: i.content_hash for i in self.instruments}
        self.personas = load_personas(study.session.personas)
        self.max_cost = max_cost
        self.spent = sum(u["cost"] for u in store.usage_by_model().values())  # earlier runs too
        self.in_flight = 0.0  # USD reserved by batches sent and not yet answered
        self.stop_reason: str | None = None
        self.check_budget()
        self.conditions = conditions(study, self.instruments, self.personas)
        self.gates: dict[str, asyncio.Semaphore] = {}  # per model, shared by its conditions
        self.limiters: dict[str, tuple] = {}  # per model: requests and tokens per minute
        self.models = [ModelRun(self, c, prices) for c in self.conditions]

    def check_budget(self) -> None:
        """Stop starting new turns once --max-cost is spent (earlier runs count too)."""
        if self.max_cost is not None and self.spent + self.in_flight >= self.max_cost:
            self.stop_reason = f"max cost {self.max_cost} reached (spent {self.spent:.4f})"


async def collect(
    study,
    store_path: str | Path | None = None,
    progress: bool = True,
    *,
    retry_errors: bool = False,
    max_cost: float | None = None,
    prices: dict | None = None,
    cache_path: str | Path | None = None,
    batch: bool = False,
    batch_poll: float | None = None,
    workers: int | None = None,
) -> CollectionSummary:
    """Collect (or resume collecting) every session of the study into the SQLite store;
    `cache_path` names a reply cache shared across studies (default: the store's own);
    `batch` sends the requests of models with a batch API in waves (vaar.collection.batch);
    `workers` runs the sessions in that many processes (None: one, unless the run is big
    enough to need more; vaar.collection.workers)."""
    check_params(study.models)
    if max_cost is not None and not prices:
        raise VaarError("--max-cost needs a price table (--prices FILE) to know what a token costs")
    store_path = Path(store_path) if store_path else study.out_path / STORE_FILE
    started = time.monotonic()
    with contextlib.ExitStack() as opened:  # the store's lock is released whatever happens
        store = opened.enter_context(contextlib.closing(Store(store_path)))
        cache = (
            opened.enter_context(contextlib.closing(ReplyCache(cache_path))) if cache_path else None
        )
        run = CollectionRun(study, store, prices or {}, max_cost, cache, batch, batch_poll)
        store.bind_study(
            study.name,
            study_fingerprint(study, run.instruments, run.personas, run.conditions),
            study.model_dump(mode="json"),
        )
        todo = pending(run, store.session_status(), retry_errors)
        count = worker_count(workers, run, todo)
        try:
            for model in run.models:  # credentials are checked here, before any request
                await model.provider.start()
            stop_display = asyncio.Event()
            display = None
            if progress:
                display = asyncio.create_task(
                    show_progress([m.stats for m in run.models], stop_display)
                )
            try:
                if count > 1:
                    await run_workers(run, count, store_path, cache_path, retry_errors)
                else:
                    await run_models(run, todo, retry_errors)
            finally:
                stop_display.set()
                if display:
                    await display
        finally:
            for model in run.models:
                await model.provider.close()
        summary = _summary(run, store, time.monotonic() - started)
        summary.workers = count
        return summary


def pending(run: CollectionRun, status: dict, retry_errors: bool) -> list[list[int]]:
    """Per model of the run, the indices of the sessions this process still has to ask (of
    its shard); its counters start from the others' states."""
    todo = []
    for model in run.models:
        concurrency, stats = model.spec.concurrency, model.stats
        mine = []
        for index in range(run.study.sessions_per_model):
            if not run.shard.owns(index, concurrency):
                continue
            stats.sessions += 1
            state, _ = status.get(model.condition.session_id(index), ("new", None))
            if state == "done":
                stats.done += 1
            elif state == "failed" and not retry_errors:
                stats.failed += 1
            else:
                mine.append(index)
        stats.done_at_start = stats.done + stats.failed
        todo.append(mine)
    return todo


async def run_models(run: CollectionRun, todo: list[list[int]], retry_errors: bool) -> None:
    """Ask the sessions `todo` (pending()) of every model of the run, in this process."""
    await run_together(
        _run_model(m, t, retry_errors) for m, t in zip(run.models, todo, strict=True)
    )


async def _run_model(model: ModelRun, todo: list[int], retry_errors: bool) -> None:
    batched = model.batched
    if batched:
        gate = asyncio.Semaphore(len(todo))
    else:  # a model's concurrency holds across its conditions
        share = model.run.shard.concurrency(model.spec.concurrency)
        gate = model.run.gates.setdefault(model.spec.name, asyncio.Semaphore(share))
    if batched:  # a wave goes out once every open session waits for it
        batched.enter(len(todo))
        how = model.condition
        turns = plan_session(how.instruments, how.session.items_per_turn, False, 0)
        model.stats.batch_waves_planned = len(turns)

    async def one(index):
        async with gate:
            try:
                if model.run.stop_reason or model.aborted:
                    return
                await model.session(index, retry_errors)
            finally:
                if batched:
                    batched.leave()

    await run_together(one(i) for i in todo)


async def run_together(coroutines) -> None:
    """Run the coroutines concurrently. The first to fail (say, the store cannot be written)
    cancels the others at once; its exception is raised as is once they have all stopped."""
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in coroutines:
                group.create_task(coroutine)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


def _summary(run: CollectionRun, store: Store, elapsed: float) -> CollectionSummary:
    summary = CollectionSummary(store.path, stopped=run.stop_reason, elapsed=elapsed)
    usage = store.usage_by_model()
    answers = store.answer_counts()
    states = store.session_status()
    for model in run.models:
        name, n = model.condition.name, run.study.sessions_per_model
        mine = [states.get(model.condition.session_id(i), ("new", None)) for i in range(n)]
        done = sum(s == "done" for s, _ in mine)
        failed = [e for s, e in mine if s == "failed"]
        u = usage.get(name, {})
        summary.models[name] = {
            "sessions": n,
            "done": done,
            "failed": len(failed),
            "incomplete": n - done - len(failed),
            "answers": answers.get(name, {}),
            "turns": u.get("turns", 0),
            "requests": u.get("requests", 0),
            "prompt_tokens": u.get("prompt_tokens", 0),
            "completion_tokens": u.get("completion_tokens", 0),
            "cache_read_tokens": u.get("cache_read_tokens", 0),
            "cache_write_tokens": u.get("cache_write_tokens", 0),
            "reasoning_tokens": u.get("reasoning_tokens", 0),
            "cost": u.get("cost", 0.0),
            "retries": model.stats.retries,
            "rate_limited": model.stats.rate_limited,
            "cached": model.stats.cached,
        }
        if failed:
            common = max(set(failed), key=failed.count)
            summary.incomplete.append(
                f"{name}: {len(failed)} session(s) failed (rerun with --retry-errors); "
                f"most common error: {common}"
            )
        unfinished = n - done - len(failed)
        if unfinished:
            why = model.aborted or run.stop_reason or "interrupted; rerun to resume"
            summary.incomplete.append(f"{name}: {unfinished} session(s) not finished ({why})")
    return summary
