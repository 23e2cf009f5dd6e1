"""One model of a collection run: its provider behind vaar's reply cache and the rate limits,
its counters and price, and its sessions, turn after turn (each turn: vaar.collection.turn),
every completed turn committed to the store at once."""

from __future__ import annotations

from aiolimiter import AsyncLimiter

from vaar.collection.batch import BatchedProvider, BatchStopped, batch_api
from vaar.collection.cost import Usage, cost_of, price_for
from vaar.collection.logprobs import for_options
from vaar.collection.progress import ModelStats
from vaar.collection.prompts import answer_schema
from vaar.collection.providers import ChatReply, ChatRequest, ProviderError, provider_class
from vaar.collection.reply_key import SessionKeys
from vaar.collection.sessions import plan_session, select_history
from vaar.collection.store import AnswerRow, TurnRecord, estimate_tokens
from vaar.collection.turn import TurnResult, ask_turn


def request_limiter(per_minute: float) -> AsyncLimiter:
    """Requests per minute as a per-second bucket (or one request per 60/rpm s below 60 rpm),
    so a run does not fire a whole minute's budget in its first second."""
    if per_minute >= 60:
        return AsyncLimiter(per_minute / 60, 1)
    return AsyncLimiter(1, 60 / per_minute)


def _limiters(spec, share: float = 1.0) -> tuple[AsyncLimiter | None, AsyncLimiter | None]:
    """A model's requests and tokens per minute (shared by its conditions); `share`: the part
    of them this process has (vaar.collection.shard; 0: it asks none of the model's sessions)."""
    if not share:
        return None, None
    rpm = request_limiter(spec.requests_per_minute * share) if spec.requests_per_minute else None
    tpm = AsyncLimiter(spec.tokens_per_minute * share, 60) if spec.tokens_per_minute else None
    return rpm, tpm


class ModelRun:
    """One condition's (a model's, or a model's under one variant: vaar.collection.conditions)
    provider, limits, counters and the logic of its sessions."""

    def __init__(self, run, condition, prices):
        self.run = run
        self.condition = condition
        self.spec = spec = condition.spec
        self.stats = ModelStats(condition.name)
        self.provider = provider_class(spec.provider)(spec, condition.instruments, self.stats)
        self.price = price_for(spec, prices)
        if spec.name not in run.limiters:  # a model's limits hold across its conditions
            run.limiters[spec.name] = _limiters(spec, run.shard.fraction(spec.concurrency))
        self.rpm, self.tpm = run.limiters[spec.name]
        self.batched: BatchedProvider | None = None  # --batch: requests go out in waves
        api = batch_api(self.provider) if run.batch else None
        if api is not None:
            self.provider = self.batched = BatchedProvider(
                self.provider, api, run.store, condition.name, self.stats, run.batch_poll
            )
            self.rpm = self.tpm = None  # a batch is paced by the provider
            self.batched.reserve, self.batched.release = self.reserve, self.release
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
    def session_keys(self, seed: int, replicate: int, system_msg: list[dict]) -> SessionKeys:
        """The reply-cache keys of one session: sha256 of everything that can change a reply
        (see docs/collection.md), hashed incrementally (vaar.collection.reply_key)."""
        return SessionKeys({**self._key_base, "seed": seed, "replicate": replicate}, system_msg)

    async def ask(self, messages, seed, schema, key_of) -> tuple[ChatReply, str]:
        """One request; `key_of(messages)` its reply-cache key (None: not cached)."""
        key = ""
        if key_of is not None:
            key = key_of(messages)
            hit = (self.run.cache or self.run.store).cached_reply(key) if self.run.lookups else None
            if hit is not None:
                self.stats.cached += 1
                return ChatReply(**hit, cached=True), key
        if self.rpm:
            await self.rpm.acquire()
        if self.tpm:
            wanted = estimate_tokens(messages) + getattr(self.provider.params, "max_tokens", 0)
            await self.tpm.acquire(min(wanted, self.tpm.max_rate))
        reply = await self.provider.complete(ChatRequest(messages, seed, schema))
        self.stats.requests += 1
        self.stats.prompt_tokens += reply.prompt_tokens
        self.stats.completion_tokens += reply.completion_tokens
        return reply, key

    def cost(self, usage: Usage) -> float:
        return cost_of(self.price, usage, batch=self.batched is not None)

    def reserve(self, requests: list[list[dict]]) -> float | None:
        """--max-cost for a batch about to be sent: the most it can cost (its prompts, and
        max_tokens per reply) is reserved; None, and the run stops, if that could pass it."""
        run = self.run
        if run.max_cost is None:
            return 0.0
        max_tokens = getattr(self.provider.params, "max_tokens", 0)
        worst = self.cost(Usage(sum(map(estimate_tokens, requests)), max_tokens * len(requests)))
        if run.spent + run.in_flight + worst > run.max_cost:
            run.stop_reason = (
                f"max cost {run.max_cost} could be passed by the next batch (at most "
                f"{worst:.4f} for {len(requests)} requests; spent {run.spent:.4f})"
            )
            return None
        run.in_flight += worst
        return worst

    def release(self, amount: float) -> None:
        self.run.in_flight -= amount

    # -- one turn ------------------------------------------------------------------------
    async def turn(self, turn, history: list[dict], seed: int, key_of=None) -> TurnResult:
        """Ask one turn (vaar.collection.turn), then count its answers and what it cost.
        `key_of(this turn's messages)`: the reply-cache key (SessionKeys.for_turn)."""
        use_schema = self.structured and self.provider.supports_json_schema
        schema = answer_schema(turn.instrument, len(turn.items)) if use_schema else None
        n = len(history)

        def own(messages):
            return key_of(messages[n:])

        def ask(messages):
            return self.ask(messages, seed, schema, own if key_of else None)

        result = await ask_turn(ask, turn, history, self.condition.session.max_reasks)
        if "answer_distribution" in result.meta:  # params.logprobs: one item, its options
            one = len(turn.items) == 1
            values = [o.value for o in turn.instrument.options]
            found = result.meta["answer_distribution"] if one else None
            result.meta = {**result.meta, "answer_distribution": for_options(found, values)}
        statuses = [answer.status for answer in result.answers]
        self.stats.refused += statuses.count("refused")
        self.stats.invalid += statuses.count("invalid")
        result.cost = self.cost(result.usage)
        self.stats.cost += result.cost
        self.run.spent += result.cost
        self.stats.turns += 1
        return result

    # -- one session ---------------------------------------------------------------------
    async def session(self, index: int, retry_errors: bool) -> None:
        """Run (or resume) one session, turn after turn, each committed to the store."""
        run, store, condition = self.run, self.run.store, self.condition
        sid = condition.session_id(index)
        seed = condition.seed(run.study.seed, index)
        how, personas = condition.session, condition.personas
        system = how.system_prompt
        if personas:
            system += "\n\n" + personas[index % len(personas)]
        plan = plan_session(condition.instruments, how.items_per_turn, how.randomize_items, seed)
        store.start_session(
            sid, self.spec.name, index, seed, system, retry_errors, variant=condition.variant
        )
        done = store.load_turns(sid)
        system_msg = [{"role": "system", "content": system}]
        keys = None
        if self.provider.cacheable:
            keys = self.session_keys(seed, index, system_msg)
            for record in done:
                keys.add_turn(record.messages)
        history, carried = list(system_msg), []  # the last turn's history and its turns
        for turn in plan[len(done) :]:
            if run.stop_reason or self.aborted:
                return
            context = self.context(done, turn, system_msg)
            if context[: len(carried)] == carried:  # the whole session: only the new turns
                history += [m for i in context[len(carried) :] for m in done[i].messages]
            else:  # (nothing keeps `history` past its turn: ask_turn sends copies)
                history = system_msg + [m for i in context for m in done[i].messages]
            carried = context
            key_of = None
            if keys is not None:
                key_of = keys.for_turn(context, run.instrument_hashes[turn.instrument.id])
            try:
                result = await self.turn(turn, history, seed, key_of)
            except BatchStopped:  # --max-cost: the wave was not sent; a rerun resumes here
                return
            except ProviderError as exc:
                self.fail(sid, plan[turn.index :], str(exc), getattr(exc, "fatal", False))
                return
            await store.write_turn(
                session=sid,
                model=self.spec.name,
                record=result.record,
                context=[done[i].turn for i in context],
                request=result.request,
                meta=result.meta,
                usage=result.usage,
                cost=result.cost,
                attempts=result.attempts,
                answers=result.answers,
                cache=result.cache_rows,
                session_done=turn.index == len(plan) - 1,
            )
            if result.cache_rows and run.cache:
                run.cache.put(result.cache_rows)
            done.append(result.record)
            if keys is not None:
                keys.add_turn(result.record.messages)
            run.check_budget()
        self.stats.done += 1

    def context(self, done: list[TurnRecord], turn, system_msg: list[dict]) -> list[int]:
        """The earlier turns this one carries: the history policy, within its token cap."""
        own = estimate_tokens([{"role": "user", "content": turn.items[0].text}]) * len(turn.items)
        reserve = estimate_tokens(system_msg) + own + 64
        return select_history(done, turn, self.condition.session.history, reserve)

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
