"""One turn of a session: ask the planned items, re-ask while any answer is unusable (at most
`session.max_reasks` times), and turn the replies into answer rows. An item keeps the first
usable answer it got, with the attempt that gave it; an item that never got one keeps the last
reply's verdict (invalid or refused)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson

from vaar.collection.cost import Usage
from vaar.collection.parsing import Parsed, parse_answer, parse_block
from vaar.collection.prompts import corrective_prompt, item_prompt
from vaar.collection.providers import ChatReply
from vaar.collection.store import AnswerRow, TurnRecord, estimate_tokens

# messages -> (the reply, its reply-cache key; "" when the provider's replies are not cached)
Ask = Callable[[list[dict]], Awaitable[tuple[ChatReply, str]]]


@dataclass
class TurnResult:
    record: TurnRecord  # the turn's messages, which later turns may carry as history
    answers: list[AnswerRow]  # one per planned item
    cache_rows: list[tuple[str, str]]  # (key, reply as JSON) of fully usable fresh replies
    request: dict  # the last request body sent, and its reply's metadata
    meta: dict
    usage: Usage  # tokens paid for (replies from vaar's own cache cost nothing)
    attempts: int
    cost: float = 0.0  # set by the caller, who holds the price


class _Best:
    """Per item: the first usable answer (parsed, attempt, reply text), else the latest parse."""

    def __init__(self, n: int):
        self.usable: list[tuple[Parsed, int, str] | None] = [None] * n
        self.latest: list[Parsed] = []

    def update(self, parsed: list[Parsed], text: str, attempt: int) -> None:
        self.latest = parsed
        for i, answer in enumerate(parsed):
            if self.usable[i] is None and answer.status == "ok":
                self.usable[i] = (answer, attempt, text)

    @property
    def complete(self) -> bool:
        return all(u is not None for u in self.usable)


async def ask_turn(ask: Ask, turn, history: list[dict], max_reasks: int) -> TurnResult:
    """Ask one planned turn after `history`, re-asking while any item is unusable."""
    instrument, n = turn.instrument, len(turn.items)
    options = [(o.value, o.label) for o in instrument.options]
    prompt = item_prompt(instrument, turn.items, turn.first_of_instrument)
    messages = [{"role": "user", "content": prompt}]
    best = _Best(n)
    cache_rows: list[tuple[str, str]] = []
    usage, attempts = Usage(), 0
    while True:
        attempts += 1
        reply, key = await ask(history + messages)
        if not reply.cached:
            usage += Usage.of(reply)
        messages.append({"role": "assistant", "content": reply.text})
        parsed = (
            [parse_answer(reply.text, options)] if n == 1 else parse_block(reply.text, n, options)
        )
        best.update(parsed, reply.text, attempts)
        if key and not reply.cached and all(p.status == "ok" for p in parsed):
            cache_rows.append((key, orjson.dumps(reply_dict(reply)).decode()))
        if best.complete or attempts > max_reasks:
            break
        messages.append({"role": "user", "content": corrective_prompt(instrument, n)})
    return TurnResult(
        TurnRecord(turn.index, instrument.id, messages, estimate_tokens(messages)),
        _rows(turn, best, reply.text, attempts),
        cache_rows,
        reply.request,
        reply.meta,
        usage,
        attempts,
    )


def _rows(turn, best: _Best, last_text: str, attempts: int) -> list[AnswerRow]:
    rows = []
    for i, planned in enumerate(turn.items):
        where = (turn.instrument.id, planned.id, planned.position)
        if best.usable[i] is not None:
            parsed, attempt, text = best.usable[i]
            rows.append(AnswerRow(*where, text, float(parsed.value), "ok", attempt))
        else:
            parsed = best.latest[i]
            rows.append(AnswerRow(*where, last_text, None, parsed.status, attempts, parsed.reason))
    return rows


def reply_dict(reply: ChatReply) -> dict:
    """A reply as the reply cache keeps it (ChatReply(**it, cached=True) gives it back)."""
    return {
        "text": reply.text,
        "request": reply.request,
        "meta": reply.meta,
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
    }
