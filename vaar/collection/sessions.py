"""Sessions: one session is one synthetic respondent, a fresh conversation that takes the
instruments in the configured order, one item (or block) per chat turn.

Everything a session asks follows from (study seed, model name, session index): the seed sent
with every request, the counterbalanced item order and so the presented positions. A resumed
session therefore asks exactly the turns an uninterrupted one would have asked.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from vaar.collection.store import TurnRecord
from vaar.config import load_personas as read_personas
from vaar.errors import ConfigError


@dataclass(frozen=True)
class PlannedItem:
    item: object  # vaar.instruments.Item
    position: int  # 1-based presented position within its instrument

    @property
    def id(self) -> str:
        return self.item.id

    @property
    def text(self) -> str:
        return self.item.text


@dataclass(frozen=True)
class Turn:
    index: int
    instrument: object  # vaar.instruments.Instrument
    items: tuple[PlannedItem, ...]
    first_of_instrument: bool


def session_id(model: str, index: int) -> str:
    """Unique within a study: model names cannot contain '/'."""
    return f"{model}/{index:04d}"


def derive_seed(*parts) -> int:
    """A stable 31-bit seed from any parts (fits every provider's seed field)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (2**31 - 1)


def plan_session(instruments, items_per_turn: int, randomize: bool, seed: int) -> list[Turn]:
    """The turns of one session: instruments in order, items shuffled within each instrument
    by the session seed (when randomize), chunked into blocks that never span instruments."""
    turns: list[Turn] = []
    for instrument in instruments:
        items = list(instrument.items)
        if randomize:
            random.Random(derive_seed(seed, instrument.id)).shuffle(items)
        planned = [PlannedItem(item, pos) for pos, item in enumerate(items, 1)]
        for start in range(0, len(planned), items_per_turn):
            chunk = tuple(planned[start : start + items_per_turn])
            turns.append(Turn(len(turns), instrument, chunk, first_of_instrument=start == 0))
    return turns


def select_history(done: list[TurnRecord], turn: Turn, spec, fixed_tokens: int) -> list[int]:
    """Which earlier turns (indices into `done`) this turn carries as real chat history:
    the whole session, the last k turns, or only this instrument's turns; then the oldest are
    dropped while system prompt + history + this turn would exceed the token cap."""
    if spec.mode == "instrument":
        chosen = [i for i, t in enumerate(done) if t.instrument == turn.instrument.id]
    elif spec.mode == "last_k":
        chosen = list(range(max(0, len(done) - spec.last_k), len(done)))
    else:
        chosen = list(range(len(done)))
    if spec.max_tokens:
        total = fixed_tokens + sum(done[i].tokens for i in chosen)
        while chosen and total > spec.max_tokens:
            total -= done[chosen.pop(0)].tokens
    return chosen


def load_personas(path: str | None) -> list[str]:
    """The study's personas, one per session in turn (see vaar.config.load_personas)."""
    if not path:
        return []
    try:
        return read_personas(path)
    except ValueError as exc:
        raise ConfigError(f"session.personas: {exc}") from None
