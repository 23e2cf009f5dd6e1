"""The `simulated` provider: an offline, deterministic respondent with a planted truth.

Each session (identified by the seed the session sends) is one respondent with latent privacy
concern PC ~ N(pc_mean, 1), prosocialness PSA ~ N(psa_mean, 1) and acceptance of data sharing
AoDS = aods_mean + b_pc (PC - pc_mean) + b_psa (PSA - psa_mean) + N(0, 1). With factor and
residual variances of 1 (lavaan's std.lv), the structural paths of a fitted model estimate b_pc
and b_psa directly (up to the attenuation of rounding and clipping), so tests can check that
vaar recovers what was planted. All privacy instruments load on PC.

An item answer is round(intercept + loading * factor + noise) on the item's scale, clipped,
mirrored for reverse-keyed items; the noise is fixed per (session, item), so a re-asked item
gets the same answer. Replies are chat-like text, sometimes malformed or refusing.

Planted protocol effects (for multiverse studies; off by default): the paths are shifted by
`order_shift_*` when the sharing instrument is asked before the value instruments (AoDS first,
read from the order of the instruments the provider is given), and by `reset_shift_*` for a
sharing item whose request carries no turn of an earlier instrument (history reset per
instrument, read from the messages).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random

from vaar.collection.prompts import extract_items
from vaar.collection.providers import ChatReply, ChatRequest, Provider
from vaar.instruments import PRIVACY, PROSOCIAL, SHARING
from vaar.registry import SimulatedParams

ROLE_FACTOR = {PRIVACY: "pc", PROSOCIAL: "psa", SHARING: "aods"}  # the latent each role reads


def planted_paths(params: dict, aods_first: bool = False, reset: bool = False) -> dict[str, float]:
    """The planted structural paths of a simulated model, keyed by the role of the predictor
    ("privacy": PC -> AoDS, "prosocial": PSA -> AoDS), on the latent scale where PC, PSA and
    the AoDS residual have variance 1; under a protocol with AoDS first and/or the history
    reset before AoDS, with the planted protocol effects."""
    p = SimulatedParams.model_validate(params).resolved()
    return {PRIVACY: p["b_pc"] + _shift(p, "pc", aods_first, reset),
            PROSOCIAL: p["b_psa"] + _shift(p, "psa", aods_first, reset)}  # fmt: skip


def _shift(p: dict, path: str, aods_first: bool, reset: bool) -> float:
    return (p[f"order_shift_{path}"] if aods_first else 0.0) + (
        p[f"reset_shift_{path}"] if reset else 0.0
    )


def sharing_first(instruments) -> bool:
    """Whether the sharing instrument is asked before every value instrument."""
    roles = [i.role for i in instruments]
    return SHARING in roles and all(r == SHARING for r in roles[: roles.index(SHARING) + 1])


def _uniform(*key) -> float:
    """A deterministic U(0, 1) from any key (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _gauss(*key) -> float:
    return random.Random(int(_uniform(*key) * 2**53)).gauss(0.0, 1.0)


class SimulatedProvider(Provider):
    name = "simulated"
    supports_json_schema = True
    cacheable = False  # cheap and deterministic: caching would only cost disk

    def __init__(self, spec, instruments, hooks=None):
        super().__init__(spec, instruments, hooks)
        self.p = self.params.resolved()
        self.by_text = {
            item.text: (instrument, item) for instrument in instruments for item in instrument.items
        }
        self._latents: dict[int, dict[str, float]] = {}
        self.aods_first = sharing_first(instruments)
        self.resets = bool(self.p["reset_shift_pc"] or self.p["reset_shift_psa"])

    def latents(self, seed: int) -> dict[str, float]:
        """The respondent behind a session: one draw of PC, PSA and AoDS per seed (and AoDS
        after a history reset, "aods_reset")."""
        if seed not in self._latents:
            p = self.p
            pc, psa, zeta = (_gauss(self.spec.name, seed, f) for f in ("pc", "psa", "aods"))
            latent = {"pc": p["pc_mean"] + pc, "psa": p["psa_mean"] + psa}
            for key, reset in (("aods", False), ("aods_reset", True)):
                b_pc = p["b_pc"] + _shift(p, "pc", self.aods_first, reset)
                b_psa = p["b_psa"] + _shift(p, "psa", self.aods_first, reset)
                latent[key] = p["aods_mean"] + b_pc * pc + b_psa * psa + zeta
            self._latents[seed] = latent
        return self._latents[seed]

    def true_answer(self, seed: int, instrument, item, reset: bool = False) -> int:
        lo, hi = instrument.scale_min, instrument.scale_max
        unit = (hi - lo) / 4
        role = ROLE_FACTOR[instrument.role]
        factor = self.latents(seed)["aods_reset" if reset and role == "aods" else role]
        intercept = (lo + hi) / 2 + (_uniform(self.spec.name, item.id) - 0.5) * 0.6 * unit
        noise = self.p["noise"] * unit * _gauss(self.spec.name, seed, item.id)
        value = min(hi, max(lo, round(intercept + self.p["loading"] * unit * factor + noise)))
        return lo + hi - value if item.reverse else value

    async def complete(self, request: ChatRequest) -> ChatReply:
        if self.p["latency"]:
            await asyncio.sleep(self.p["latency"])
        asked, attempt = self._asked(request.messages)
        reset = bool(asked) and self.resets and self._reset(request.messages, asked[0][0])
        if not asked:
            text = "I'm not sure what you are asking me."
        elif self.params.structured and request.json_schema:
            values = [self.true_answer(request.seed, ins, item, reset) for ins, item in asked]
            body = {"answer": values[0]} if len(values) == 1 else {"answers": values}
            text = json.dumps(body)
        else:
            text = self._chat_text(request.seed, asked, attempt, reset)
        prompt_chars = sum(len(m["content"]) for m in request.messages)
        return ChatReply(
            text=text,
            request={"model": self.model_id, "seed": request.seed, "params": self.p},
            meta={"model": self.model_id, "finish_reason": "stop"},
            prompt_tokens=prompt_chars // 4 + 4 * len(request.messages),
            completion_tokens=len(text) // 4 + 1,
        )

    def _asked(self, messages):
        """The items of the latest item prompt and how many corrective re-asks followed it."""
        attempt = 0
        for message in reversed(messages):
            if message["role"] != "user":
                continue
            texts = extract_items(message["content"])
            if texts:
                return [self.by_text[t] for t in texts if t in self.by_text], attempt
            attempt += 1
        return [], attempt

    def _reset(self, messages, instrument) -> bool:
        """A turn of an instrument that is not the first, whose history holds no turn of
        another instrument: the history was reset before it."""
        if instrument.id == self.instruments[0].id:
            return False
        for message in messages:
            if message["role"] == "user":
                for text in extract_items(message["content"]):
                    if text in self.by_text and self.by_text[text][0].id != instrument.id:
                        return False
        return True

    def _chat_text(self, seed, asked, attempt, reset=False) -> str:
        first_item = asked[0][1].id
        if _uniform(seed, first_item, "refuse") < self.p["refusal_rate"]:
            return "As an AI, I don't have personal experiences, so I can't answer that."
        rate = self.p["malformed_rate"] if attempt == 0 else self.p["malformed_rate"] / 4
        if _uniform(seed, first_item, attempt, "malformed") < rate:
            instrument = asked[0][0]
            return random.Random(int(_uniform(seed, first_item, attempt) * 2**32)).choice(
                [
                    "Hmm, that really depends on the situation.",
                    f"Somewhere between {instrument.scale_min} and {instrument.scale_max}, "
                    "it varies a lot for me.",
                    f"I'd give it a {instrument.scale_max + 2}.",
                    "It's hard to say.",
                ]
            )
        if len(asked) > 1:
            lines = [
                f"{n}. {self.true_answer(seed, ins, item, reset)}"
                for n, (ins, item) in enumerate(asked, 1)
            ]
            return "\n".join(lines)
        instrument, item = asked[0]
        value = self.true_answer(seed, instrument, item, reset)
        label = instrument.label_for(value)
        style = int(_uniform(seed, item.id, "style") * 5)
        return [
            f"{value}",
            f"I'd say {value} — {label.lower()}.",
            f"{value} ({label})",
            f"My answer: {value}",
            f"{label}.",
        ][style]
