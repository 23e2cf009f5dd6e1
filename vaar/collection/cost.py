"""Token accounting in money: an optional price table and the dry-run estimate.

The price table is a TOML file of USD per million tokens, keyed by model name (as in the study)
or by the provider's model id:

    [models.claude-sonnet]
    input = 3.0
    output = 15.0
    cached_input = 0.30   # prompt tokens read from the provider's cache (default: input)
    cache_write = 3.75    # prompt tokens written to it (Anthropic; default: input)
    batch = 0.5           # batch price as a fraction of the live price (default: 1)

A turn's tokens come by kind (`Usage`): prompt tokens, of which some were read from or written
to the provider's prompt cache, and completion tokens, of which some were hidden reasoning
(billed as output). The dry run plans one session exactly as `collect` would (same prompts,
same history policy and token cap, replies assumed `reply_tokens` long, no re-asks), so its
counts grow with the history just as a real session's do; it prices the run four ways: plain,
with prompt caching (each call reads the prefix it shares with the session's previous call),
in batches, and both.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaar.errors import ConfigError, format_validation_error
from vaar.files import read_toml


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: float = Field(ge=0, description="USD per million prompt tokens")
    output: float = Field(ge=0, description="USD per million completion tokens")
    cached_input: float | None = Field(
        None, ge=0, description="USD per million prompt tokens read from the cache"
    )
    cache_write: float | None = Field(
        None, ge=0, description="USD per million prompt tokens written to the cache"
    )
    batch: float = Field(1.0, gt=0, le=1, description="batch price / live price")

    def resolved(self) -> dict:
        out = self.model_dump()
        for kind in ("cached_input", "cache_write"):
            if out[kind] is None:
                out[kind] = self.input
        return out


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: dict[str, Price]


def load_prices(path: str | Path | None) -> dict[str, dict]:
    """{model name or id: {"input", "output", "cached_input", "cache_write", "batch"}} from a
    price TOML file ({} for None)."""
    if path is None:
        return {}
    raw = read_toml(path, "price table")
    try:
        table = PriceTable.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None
    return {name: price.resolved() for name, price in table.models.items()}


def price_for(spec, prices: dict) -> dict | None:
    return prices.get(spec.name) or prices.get(spec.model or "") or None


@dataclass
class Usage:
    """Tokens by kind; cache_read and cache_write are part of prompt, reasoning of completion."""

    prompt: int = 0
    completion: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f) + getattr(other, f) for f in _USAGE_FIELDS))

    @classmethod
    def of(cls, reply) -> Usage:
        """A provider reply's tokens (vaar.collection.providers.ChatReply)."""
        return cls(
            reply.prompt_tokens,
            reply.completion_tokens,
            reply.cache_read_tokens,
            reply.cache_write_tokens,
            reply.reasoning_tokens,
        )


_USAGE_FIELDS = tuple(f.name for f in fields(Usage))


def cost_of(price: dict | None, usage: Usage, batch: bool = False) -> float:
    """USD for `usage` at `price` (a load_prices entry), at the batch rate if `batch`."""
    if not price:
        return 0.0
    p = Price.model_validate(price).resolved()  # a bare {input, output} dict works too
    uncached = max(0, usage.prompt - usage.cache_read - usage.cache_write)
    usd = (
        uncached * p["input"]
        + usage.cache_read * p["cached_input"]
        + usage.cache_write * p["cache_write"]
        + usage.completion * p["output"]
    ) / 1e6
    return usd * p["batch"] if batch else usd


WAYS = ("plain", "cached", "batch", "batch+cached")  # the four prices of a dry run


@dataclass
class Estimate:
    model: str
    sessions: int
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cache_read_tokens: int  # of prompt_tokens, with prompt caching
    cache_write_tokens: int
    costs: dict[str, float] | None  # WAYS -> USD; None without a price for this model
    variant: str = ""  # a multiverse study's variant ('' otherwise); `model` is the condition
    conditions: int = 1  # how many conditions a sum of estimates (`total`) holds

    @property
    def cost(self) -> float | None:
        return self.costs["plain"] if self.costs else None

    @classmethod
    def total(cls, label: str, rows: list[Estimate]) -> Estimate:
        """The sum of `rows` (its costs only when every row is priced)."""
        counts = [sum(getattr(r, f) for r in rows) for f in _COUNTS]
        priced = all(r.costs is not None for r in rows)
        costs = {way: sum(r.costs[way] for r in rows) for way in WAYS} if priced else None
        return cls(label, *counts, costs, conditions=sum(r.conditions for r in rows))

    def line(self) -> str:
        if self.costs is None:
            cost = "no price"
        else:
            cost = ", ".join(f"{way} ${self.costs[way]:,.4f}" for way in WAYS)
        grid = f"{self.conditions} conditions, " if self.conditions > 1 else ""
        return (
            f"{self.model}: {grid}{self.sessions} sessions, {self.calls:,} calls, "
            f"~{self.prompt_tokens:,} prompt + ~{self.completion_tokens:,} completion tokens "
            f"(~{self.cache_read_tokens:,} prompt tokens from the cache when cached), {cost}"
        )


_COUNTS = ("sessions", "calls", "prompt_tokens", "completion_tokens", "cache_read_tokens",
           "cache_write_tokens")  # fmt: skip


def _plan_calls(spec, instruments, seed: int, reply_tokens: int) -> list[tuple[int, int]]:
    """(prompt tokens, tokens of the prefix shared with the previous call) per call of one
    session under session settings `spec`, as `collect` would send them."""
    from vaar.collection.prompts import item_prompt
    from vaar.collection.sessions import plan_session, select_history
    from vaar.collection.store import TurnRecord, estimate_tokens

    plan = plan_session(instruments, spec.items_per_turn, False, seed)
    system = [{"role": "system", "content": spec.system_prompt}]
    done: list[TurnRecord] = []
    calls, previous = [], []
    for turn in plan:
        ask = {
            "role": "user",
            "content": item_prompt(turn.instrument, turn.items, turn.first_of_instrument),
        }
        own = estimate_tokens([ask])
        chosen = select_history(done, turn, spec.history, estimate_tokens(system) + own + 64)
        sent = system + [m for i in chosen for m in done[i].messages] + [ask]
        shared = 0
        for a, b in zip(previous, sent, strict=False):
            if a != b:
                break
            shared += 1
        calls.append((estimate_tokens(sent), estimate_tokens(sent[:shared])))
        previous = sent
        answer = {"role": "assistant", "content": "x" * (4 * reply_tokens)}
        done.append(TurnRecord(turn.index, turn.instrument.id, [ask, answer], own + reply_tokens))
    return calls


def estimate(study, instruments, prices: dict, reply_tokens: int = 8) -> list[Estimate]:
    """Calls, tokens and cost per condition (per model; per model x variant in a multiverse
    study) for a full run (before any re-ask), priced plain, cached, in batches and both."""
    from vaar.collection.conditions import conditions
    from vaar.registry import CACHE_MIN_TOKENS

    plans: dict[str, list[tuple[int, int]]] = {}  # per variant: the models share its plan
    out = []
    for condition in conditions(study, instruments, []):
        if condition.variant not in plans:
            plans[condition.variant] = _plan_calls(
                condition.session, condition.instruments, study.seed, reply_tokens
            )
        calls, model = plans[condition.variant], condition.spec
        n = study.sessions_per_model
        minimum = model.params.get("cache_min_tokens", CACHE_MIN_TOKENS)
        plain = Usage(sum(p for p, _ in calls), len(calls) * reply_tokens)
        hits = [(p, shared if shared >= minimum else 0) for p, shared in calls]
        read = sum(r for _, r in hits)
        written = sum(p - r for p, r in hits if p >= minimum)  # the rest up to the breakpoint
        cached = Usage(plain.prompt, plain.completion, read, written)
        price = price_for(model, prices)
        costs = None
        if price:
            costs = {
                "plain": cost_of(price, plain) * n,
                "cached": cost_of(price, cached) * n,
                "batch": cost_of(price, plain, batch=True) * n,
                "batch+cached": cost_of(price, cached, batch=True) * n,
            }
        out.append(
            Estimate(
                condition.name, n, len(calls) * n, plain.prompt * n, plain.completion * n,
                read * n, written * n, costs, condition.variant,
            )
        )  # fmt: skip
    return out
