"""Batch collection in waves (`vaar collect --batch`): the providers' batch endpoints bill about
half the live price and answer within 24 h, but a questionnaire session is a conversation, so
its turns cannot all go at once. vaar sends them in waves: every open session of a model asks
its next request (turn k, or a re-ask of it) and waits; once all of them wait, the requests go
out as ONE provider batch; its results are handed back to the sessions, which parse and store
each turn exactly as in a live run and ask their next request, which makes the next wave.

`BatchedProvider` wraps a model's live provider: the sessions and the runner are the same code
as live; only `complete` waits for the wave. Requests that errored, or that an expired or
cancelled batch did not finish, go into the next wave (at most `max_resubmits` times each).

Nothing is paid twice: a request's `custom_id` is a hash of its session seed and body, each
batch is recorded in the store (its provider id, its custom_ids) as soon as the provider
accepts it, and each result as soon as it is fetched. A killed `vaar collect` rerun asks the
same requests again; those answered already are taken from the store, those in a batch still
in flight wait for that batch (polled, not submitted again), and only the rest make a new batch.

--max-cost counts a batch before it is sent (`budget`): at most its prompts plus max_tokens per
request, at the batch price, reserved until its results are in; a wave that could pass the
limit is not sent, and its sessions stop where they are (a rerun resumes them).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field

from vaar.collection.providers import ChatReply, ChatRequest, ProviderError

POLL_INTERVAL = 30.0  # seconds between polls of a batch in flight
MAX_RESUBMITS = 3  # a request that errored, or was left unfinished, goes again at most this often


class BatchStopped(Exception):
    """The wave was not sent (--max-cost): the session stops, unfailed, to resume later."""


@dataclass
class BatchStatus:
    state: str  # the provider's word: in_progress, completed, ended, expired, ...
    ended: bool  # results (of all, or of some requests) can be fetched now
    done: int = 0  # requests finished so far
    total: int = 0
    detail: dict = field(default_factory=dict)  # the provider's batch object


@dataclass
class Outcome:
    data: dict | None = None  # the reply body, as the live endpoint returns it
    error: str | None = None  # why this request failed (it goes into the next wave)


class BatchAPI:
    """One provider's batch endpoints, sent through the provider's `call` (its retry layer)."""

    def __init__(self, provider):
        self.provider = provider

    async def submit(self, requests: dict[str, dict]) -> str:
        raise NotImplementedError

    async def status(self, batch_id: str) -> BatchStatus:
        raise NotImplementedError

    async def results(self, status: BatchStatus) -> dict[str, Outcome]:
        raise NotImplementedError


def batch_api(provider) -> BatchAPI | None:
    """The batch API of a provider, None for providers without one (they run live)."""
    from vaar.collection.providers.anthropic_batch import AnthropicBatchAPI
    from vaar.collection.providers.openai_batch import OpenAIBatchAPI

    apis = {"openai": OpenAIBatchAPI, "anthropic": AnthropicBatchAPI}
    cls = apis.get(provider.name)
    return cls(provider) if cls else None


def custom_id(seed: int, body: dict) -> str:
    """The same request of the same session always has the same id (both APIs accept
    1-64 characters of [a-zA-Z0-9_-])."""
    key = json.dumps({"seed": seed, "body": body}, sort_keys=True).encode()
    return "vaar-" + hashlib.sha256(key).hexdigest()[:40]


@dataclass
class _Waiting:
    body: dict
    future: asyncio.Future
    messages: list[dict] = field(default_factory=list)
    tries: int = 0
    errors: list = field(default_factory=list)


class BatchedProvider:
    """A live provider whose `complete` goes out in the model's next wave."""

    def __init__(self, inner, api: BatchAPI, store, model: str, stats, poll_interval=None):
        self.inner = inner
        self.api = api
        self.store = store
        self.model = model
        self.stats = stats
        self.poll_interval = POLL_INTERVAL if poll_interval is None else poll_interval
        self.active = 0  # sessions running: a wave goes once each of them waits
        self.waiting: dict[str, _Waiting] = {}
        self.wave_task: asyncio.Task | None = None
        self.waves = 0
        # --max-cost: reserve(messages of each request) -> USD reserved, or None to stop;
        # release(USD) once the batch's results are in (set by the model run)
        self.reserve = lambda requests: 0.0
        self.release = lambda amount: None

    def __getattr__(self, name):  # name, params, model_id, base_url, start, close, ...
        return getattr(self.inner, name)

    # -- the sessions' side ----------------------------------------------------------------
    def enter(self, sessions: int) -> None:
        self.active += sessions

    def leave(self) -> None:
        self.active -= 1
        self._maybe_launch()

    async def complete(self, request: ChatRequest) -> ChatReply:
        body = self.inner.body(request)
        cid = custom_id(request.seed, body)
        waiting = _Waiting(body, asyncio.get_running_loop().create_future(), request.messages)
        self.waiting[cid] = waiting
        self._maybe_launch()
        data = await waiting.future
        return self.inner.reply(data, self.inner.sent(body))

    def _maybe_launch(self) -> None:
        if self.wave_task is None and self.waiting and len(self.waiting) >= self.active:
            self.wave_task = asyncio.get_running_loop().create_task(self._wave())

    # -- one wave --------------------------------------------------------------------------
    async def _wave(self) -> None:
        wave, self.waiting = self.waiting, {}
        self.waves += 1
        self.stats.batch_wave = self.waves
        try:
            outcomes = await self._outcomes(wave)
        except BaseException as exc:  # the provider failed for good: every session hears it
            for w in wave.values():
                if not w.future.done():
                    w.future.set_exception(
                        exc if isinstance(exc, Exception) else ProviderError(str(exc))
                    )
            self.wave_task = None
            if not isinstance(exc, Exception):
                raise
            return
        for cid, w in wave.items():
            outcome = outcomes.get(cid)
            if outcome is not None and outcome.data is not None:
                w.future.set_result(outcome.data)
                continue
            w.tries += 1
            w.errors.append(outcome.error if outcome else "not finished (batch expired/cancelled)")
            self.stats.batch_resubmitted += 1
            if w.tries > MAX_RESUBMITS:
                w.future.set_exception(
                    ProviderError(
                        f"{self.model}: batch request failed {w.tries} times: {w.errors[-1]}"
                    )
                )
            else:
                self.waiting[cid] = w  # into the next wave
        self.wave_task = None
        self._maybe_launch()

    async def _outcomes(self, wave: dict[str, _Waiting]) -> dict[str, Outcome]:
        """Each request's outcome: stored already, from a batch in flight, or from a new one."""
        stored = self.store.batch_results(list(wave))
        outcomes = {cid: Outcome(data=data) for cid, data in stored.items()}
        todo = {cid for cid in wave if cid not in outcomes}
        for batch_id, cids in self.store.open_batches(self.model):
            if todo & set(cids):  # sent by a run that was killed: wait for it, do not resend
                outcomes.update(await self._finish(batch_id))
                todo -= set(cids)
        todo -= set(outcomes)
        if todo:
            reserved = self.reserve([wave[cid].messages for cid in todo])
            if reserved is None:
                raise BatchStopped("max cost")
            try:
                requests = {cid: wave[cid].body for cid in sorted(todo)}
                batch_id = await self.api.submit(requests)
                self.store.record_batch(batch_id, self.model, self.waves, list(requests))
                self.stats.batches += 1
                outcomes.update(await self._finish(batch_id))
            finally:
                self.release(reserved)
        return outcomes

    async def _finish(self, batch_id: str) -> dict[str, Outcome]:
        """Poll a batch until it ends; store and return its results."""
        started = time.monotonic()
        while True:
            status = await self.api.status(batch_id)
            self.stats.batch_state = f"{status.state} {status.done}/{status.total}"
            if status.ended:
                break
            await asyncio.sleep(self.poll_interval)
        results = await self.api.results(status)
        self.store.finish_batch(
            batch_id,
            status.state,
            {cid: {"data": o.data, "error": o.error} for cid, o in results.items()},
        )
        self.stats.batch_seconds += time.monotonic() - started
        return results
