"""Collection: run every session of every model against its provider and store each turn.

Sessions of a model run in parallel (at most ModelSpec.concurrency in flight; requests and
tokens per minute limited with aiolimiter); turns within a session run in sequence. Each
completed turn is committed to the store at once, so a rerun resumes exactly where a crash or
kill -9 stopped: finished sessions are skipped, started ones continue with their next turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from pathlib import Path

from aiolimiter import AsyncLimiter

from vaar.collection.batch import BatchedProvider, batch_api
from vaar.collection.cost import Usage, cost_of, price_for
from vaar.collection.parsing import parse_answer, parse_block
from vaar.collection.progress import ModelStats, show_progress
from vaar.collection.prompts import answer_schema, corrective_prompt, item_prompt
from vaar.collection.providers import (
    ChatReply,
    ChatRequest,
    ProviderError,
    check_params,
    provider_class,
)
from vaar.collection.sessions import (
    derive_seed,
    load_personas,
    plan_session,
    select_history,
    session_id,
)
from vaar.collection.store import (
    STORE_FILE,
    AnswerRow,
    ReplyCache,
    Store,
    TurnRecord,
    estimate_tokens,
)
from vaar.collection.summary import CollectionSummary
from vaar.errors import VaarError
from vaar.instruments import load_instruments


def study_fingerprint(study, instruments, personas: list[str]) -> str:
    """What must not change between runs writing into the same store."""
    design = {
        "seed": study.seed,
        "models": [m.model_dump(mode="json") for m in study.models],
        "instruments": [[i.id, i.content_hash] for i in instruments],
        "session": study.session.model_dump(mode="json"),
        "personas": personas,
    }
    return hashlib.sha256(json.dumps(design, sort_keys=True).encode()).hexdigest()


def request_limiter(per_minute: float) -> AsyncLimiter:
    """Requests per minute as a per-second bucket (or one request per 60/rpm s below 60 rpm),
    so a run does not fire a whole minute's budget in its first second."""
    if per_minute >= 60:
        return AsyncLimiter(per_minute / 60, 1)
    return AsyncLimiter(1, 60 / per_minute)


class ModelRun:
    """One model's provider, limits, counters and the logic of its sessions."""

    def __init__(self, run, spec, prices):
        self.run = run
        self.spec = spec
        self.stats = ModelStats(spec.name)
        self.provider = provider_class(spec.provider)(spec, run.instruments, self.stats)
        self.price = price_for(spec, prices)
        self.rpm = request_limiter(spec.requests_per_minute) if spec.requests_per_minute else None
        self.tpm = AsyncLimiter(spec.tokens_per_minute, 60) if spec.tokens_per_minute else None
        self.batched: BatchedProvider | None = None  # --batch: requests go out in waves
        api = batch_api(self.provider) if run.batch else None
        if api is not None:
            self.provider = self.batched = BatchedProvider(
                self.provider, api, run.store, spec.name, self.stats, run.batch_poll
            )
            self.rpm = self.tpm = None  # a batch is paced by the provider
        self.structured = bool(getattr(self.provider.params, "structured", False))
        self.aborted: str | None = None
        self.errors: dict[str, int] = {}
        p = self.provider
        self._key_base = {  # the part of the cache key that is fixed for this model
            "provider": spec.provider,
            "base_url": p.base_url,
            "model": p.model_id,
            "params": p.resolved_params(),
        }

    # -- one request -----------------------------------------------------------------------
    def cache_key(self, messages, seed, replicate, instrument) -> str:
        """sha256 of everything that can change a reply (see docs/collection.md)."""
        key = {
            **self._key_base,
            "seed": seed,
            "messages": messages,
            "replicate": replicate,
            "instrument": self.run.instrument_hashes[instrument.id],
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    async def ask(self, messages, seed, schema, replicate, instrument) -> tuple[ChatReply, str]:
        key = ""
        if self.provider.cacheable:
            key = self.cache_key(messages, seed, replicate, instrument)
            hit = (self.run.cache or self.run.store).cached_reply(key)
            if hit is not None:
                self.stats.cached += 1
                return ChatReply(**hit, cached=True), key
        if self.rpm:
            await self.rpm.acquire()
        if self.tpm:
            wanted = estimate_tokens(messages) + getattr(self.provider.params, "max_tokens", 0)
            await self.tpm.acquire(min(wanted, self.spec.tokens_per_minute))
        reply = await self.provider.complete(ChatRequest(messages, seed, schema))
        self.stats.requests += 1
        self.stats.prompt_tokens += reply.prompt_tokens
        self.stats.completion_tokens += reply.completion_tokens
        return reply, key

    def cost(self, usage: Usage) -> float:
        return cost_of(self.price, usage, batch=self.batched is not None)

    # -- one turn ------------------------------------------------------------------------
    async def turn(self, turn, history: list[dict], seed: int, replicate: int):
        """Ask one turn, re-asking up to max_reasks times while any item is unusable."""
        instrument, n = turn.instrument, len(turn.items)
        options = [(o.value, o.label) for o in instrument.options]
        use_schema = self.structured and self.provider.supports_json_schema
        schema = answer_schema(instrument, n) if use_schema else None
        messages = [
            {
                "role": "user",
                "content": item_prompt(instrument, turn.items, turn.first_of_instrument),
            }
        ]
        best: list = [None] * n
        last: list = []
        raws = [""] * n
        cache_rows, request, meta = [], {}, {}
        usage, attempts = Usage(), 0
        while True:
            attempts += 1
            reply, key = await self.ask(history + messages, seed, schema, replicate, instrument)
            request, meta = reply.request, reply.meta
            if not reply.cached:  # a reply from vaar's own cache costs nothing
                usage += Usage.of(reply)
            messages.append({"role": "assistant", "content": reply.text})
            last = (
                [parse_answer(reply.text, options)]
                if n == 1
                else parse_block(reply.text, n, options)
            )
            for i, parsed in enumerate(last):
                if best[i] is None:
                    raws[i] = reply.text
                    if parsed.status == "ok":
                        best[i] = (parsed, attempts)
            if all(p.status == "ok" for p in last) and key and not reply.cached:
                cache_rows.append((key, json.dumps(_reply_dict(reply))))
            if all(b is not None for b in best) or attempts > self.run.study.session.max_reasks:
                break
            messages.append({"role": "user", "content": corrective_prompt(instrument, n)})
        answers = []
        for i, planned in enumerate(turn.items):
            if best[i] is not None:
                parsed, at = best[i]
                row = AnswerRow(
                    instrument.id,
                    planned.id,
                    planned.position,
                    raws[i],
                    float(parsed.value),
                    "ok",
                    at,
                )
            else:
                parsed = last[i]
                raws[i] = messages[-1]["content"]
                row = AnswerRow(
                    instrument.id,
                    planned.id,
                    planned.position,
                    raws[i],
                    None,
                    parsed.status,
                    attempts,
                    parsed.reason,
                )
                if parsed.status == "refused":
                    self.stats.refused += 1
                else:
                    self.stats.invalid += 1
            answers.append(row)
        cost = self.cost(usage)
        self.stats.cost += cost
        self.run.spent += cost
        self.stats.turns += 1
        record = TurnRecord(turn.index, instrument.id, messages, estimate_tokens(messages))
        return (
            record,
            answers,
            cache_rows,
            request,
            meta,
            (usage, cost),
            attempts,
        )

    # -- one session ---------------------------------------------------------------------
    async def session(self, index: int, retry_errors: bool) -> None:
        run, store = self.run, self.run.store
        sid = session_id(self.spec.name, index)
        seed = derive_seed(run.study.seed, self.spec.name, index)
        system = run.study.session.system_prompt
        if run.personas:
            system += "\n\n" + run.personas[index % len(run.personas)]
        plan = plan_session(
            run.instruments,
            run.study.session.items_per_turn,
            run.study.session.randomize_items,
            seed,
        )
        store.start_session(sid, self.spec.name, index, seed, system, retry_errors)
        done = store.load_turns(sid)
        system_msg = [{"role": "system", "content": system}]
        system_tokens = estimate_tokens(system_msg)
        for turn in plan[len(done) :]:
            if run.stop_reason or self.aborted:
                return
            own = estimate_tokens([{"role": "user", "content": turn.items[0].text}]) * len(
                turn.items
            )
            context = select_history(
                done, turn, run.study.session.history, system_tokens + own + 64
            )
            history = system_msg + [m for i in context for m in done[i].messages]
            try:
                record, answers, cache, request, meta, (usage, cost), attempts = await self.turn(
                    turn, history, seed, index
                )
            except ProviderError as exc:
                self.fail(sid, plan[turn.index :], str(exc), getattr(exc, "fatal", False))
                return
            last = turn.index == len(plan) - 1
            await store.write_turn(
                session=sid,
                model=self.spec.name,
                record=record,
                context=[done[i].turn for i in context],
                request=request,
                meta=meta,
                usage=usage,
                cost=cost,
                attempts=attempts,
                answers=answers,
                cache=cache,
                session_done=last,
            )
            if cache and run.cache:
                run.cache.put(cache)
            done.append(record)
            if run.max_cost is not None and run.spent >= run.max_cost:
                run.stop_reason = f"max cost {run.max_cost} reached (spent {run.spent:.4f})"
        self.stats.done += 1

    def fail(self, sid: str, remaining, error: str, fatal: bool) -> None:
        """A request failed for good: record why, mark the unasked items as errors."""
        unasked = [
            (t.index, AnswerRow(t.instrument.id, p.id, p.position, error, None, "error", 0,
                                "provider error"))
            for t in remaining
            for p in t.items
        ]  # fmt: skip
        self.run.store.fail_session(sid, self.spec.name, unasked, error)
        self.stats.failed += 1
        self.errors[error] = self.errors.get(error, 0) + 1
        if fatal and not self.aborted:
            self.aborted = error


def _reply_dict(reply: ChatReply) -> dict:
    return {
        "text": reply.text,
        "request": reply.request,
        "meta": reply.meta,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
    }


class CollectionRun:
    def __init__(
        self, study, store, prices, max_cost, cache=None, batch=False, batch_poll=None
    ):  # fmt: skip
        self.study = study
        self.batch = batch  # models with a batch API send their requests in waves
        self.batch_poll = batch_poll  # seconds between polls (None: the default)
        self.store = store
        self.cache = cache  # a shared ReplyCache, else the store's own cache table
        self.instruments = load_instruments(study.instruments)
        self.instrument_hashes = {i.id: i.content_hash for i in self.instruments}
        self.personas = load_personas(study.session.personas)
        self.max_cost = max_cost
        self.spent = sum(u["cost"] for u in store.usage_by_model().values())  # earlier runs too
        self.stop_reason: str | None = None
        if max_cost is not None and self.spent >= max_cost:
            self.stop_reason = f"max cost {max_cost} reached (spent {self.spent:.4f})"
        self.models = [ModelRun(self, spec, prices) for spec in study.models]


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
) -> CollectionSummary:
    """Collect (or resume collecting) every session of the study into the SQLite store;
    `cache_path` names a reply cache shared across studies (default: the store's own);
    `batch` sends the requests of models with a batch API in waves (vaar.collection.batch)."""
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
            study_fingerprint(study, run.instruments, run.personas),
            study.model_dump(mode="json"),
        )
        status = store.session_status()
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
                await run_together(_run_model(m, status, retry_errors) for m in run.models)
            finally:
                stop_display.set()
                if display:
                    await display
        finally:
            for model in run.models:
                await model.provider.close()
        return _summary(run, store, time.monotonic() - started)


async def _run_model(model: ModelRun, status: dict, retry_errors: bool) -> None:
    n = model.run.study.sessions_per_model
    model.stats.sessions = n
    todo = []
    for index in range(n):
        state, _ = status.get(session_id(model.spec.name, index), ("new", None))
        if state == "done":
            model.stats.done += 1
        elif state == "failed" and not retry_errors:
            model.stats.failed += 1
        else:
            todo.append(index)
    model.stats.done_at_start = model.stats.done + model.stats.failed
    batched = model.batched
    gate = asyncio.Semaphore(len(todo) if batched else model.spec.concurrency)
    if batched:  # a wave goes out once every open session waits for it
        batched.enter(len(todo))
        study = model.run.study
        turns = plan_session(model.run.instruments, study.session.items_per_turn, False, 0)
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
        name, n = model.spec.name, run.study.sessions_per_model
        mine = [states.get(session_id(name, i), ("new", None)) for i in range(n)]
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
