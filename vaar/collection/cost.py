"""Token accounting in money: an optional price table and the dry-run estimate.

The price table is a TOML file of USD per million tokens, keyed by model name (as in the study)
or by the provider's model id:

    [models.gpt-4o-mini]
    input = 0.15
    output = 0.60

The dry run plans one session exactly as `collect` would (same prompts, same history policy and
token cap, replies assumed `reply_tokens` long, no re-asks), so its counts grow with the history
just as a real session's do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vaar.errors import ConfigError, format_validation_error
from vaar.files import read_toml


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: float = Field(ge=0, description="USD per million prompt tokens")
    output: float = Field(ge=0, description="USD per million completion tokens")


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    models: dict[str, Price]


def load_prices(path: str | Path | None) -> dict[str, dict]:
    """{model name or id: {"input": x, "output": y}} from a price TOML file ({} for None)."""
    if path is None:
        return {}
    raw = read_toml(path, "price table")
    try:
        table = PriceTable.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(str(path), exc)) from None
    return {name: price.model_dump() for name, price in table.models.items()}


def price_for(spec, prices: dict) -> dict | None:
    return prices.get(spec.name) or prices.get(spec.model or "") or None


def cost_of(price: dict | None, prompt_tokens: int, completion_tokens: int) -> float:
    if not price:
        return 0.0
    return (prompt_tokens * price["input"] + completion_tokens * price["output"]) / 1e6


@dataclass
class Estimate:
    model: str
    sessions: int
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None  # None without a price for this model

    def line(self) -> str:
        cost = "no price" if self.cost is None else f"${self.cost:,.4f}"
        return (
            f"{self.model}: {self.sessions} sessions, {self.calls:,} calls, "
            f"~{self.prompt_tokens:,} prompt + ~{self.completion_tokens:,} completion tokens, "
            f"{cost}"
        )


def estimate(study, instruments, prices: dict, reply_tokens: int = 8) -> list[Estimate]:
    """Calls, tokens and cost per model for a full run (before any re-ask)."""
    from vaar.collection.prompts import item_prompt
    from vaar.collection.sessions import plan_session, select_history
    from vaar.collection.store import TurnRecord, estimate_tokens

    spec = study.session
    plan = plan_session(instruments, spec.items_per_turn, False, study.seed)
    system = [{"role": "system", "content": spec.system_prompt}]
    done: list[TurnRecord] = []
    prompt_tokens = 0
    for turn in plan:
        ask = {
            "role": "user",
            "content": item_prompt(turn.instrument, turn.items, turn.first_of_instrument),
        }
        own = estimate_tokens([ask])
        chosen = select_history(done, turn, spec.history, estimate_tokens(system) + own + 64)
        prompt_tokens += estimate_tokens(system) + own + sum(done[i].tokens for i in chosen)
        answer = {"role": "assistant", "content": "x" * (4 * reply_tokens)}
        done.append(TurnRecord(turn.index, turn.instrument.id, [ask, answer], own + reply_tokens))
    out = []
    for model in study.models:
        n = study.sessions_per_model
        p, c = prompt_tokens * n, len(plan) * reply_tokens * n
        price = price_for(model, prices)
        cost = cost_of(price, p, c) if price else None
        out.append(Estimate(model.name, n, len(plan) * n, p, c, cost))
    return out
