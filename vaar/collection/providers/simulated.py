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


def planted_paths(params: dict) -> dict[str, float]:
    """The planted structural paths of a simulated model, keyed by the role of the predictor
    ("privacy": PC -> AoDS, "prosocial": PSA -> AoDS), on the latent scale where PC, PSA and
    the AoDS residual have variance 1."""
    resolved = SimulatedParams.model_validate(params).resolved()
    return {PRIVACY: resolved["b_pc"], PROSOCIAL: resolved["b_psa"]}


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

    def latents(self, seed: int) -> dict[str, float]:
        """The respondent behind a session: one draw of PC, PSA and AoDS per seed."""
        if seed not in self._latents:
            p = self.p
            pc, psa, zeta = (_gauss(self.spec.name, seed, f) for f in ("pc", "psa", "aods"))
            self._latents[seed] = {
                "pc": p["pc_mean"] + pc,
                "psa": p["psa_mean"] + psa,
                "aods": p["aods_mean"] + p["b_pc"] * pc + p["b_psa"] * psa + zeta,
            }
        return self._latents[seed]

    def true_answer(self, seed: int, instrument, item) -> int:
        lo, hi = instrument.scale_min, instrument.scale_max
        unit = (hi - lo) / 4
        factor = self.latents(seed)[ROLE_FACTOR[instrument.role]]
        intercept = (lo + hi) / 2 + (_uniform(self.spec.name, item.id) - 0.5) * 0.6 * unit
        noise = self.p["noise"] * unit * _gauss(self.spec.name, seed, item.id)
        value = min(hi, max(lo, round(intercept + self.p["loading"] * unit * factor + noise)))
        return lo + hi - value if item.reverse else value

    async def complete(self, request: ChatRequest) -> ChatReply:
        if self.p["latency"]:
            await asyncio.sleep(self.p["latency"])
        asked, attempt = self._asked(request.messages)
        if not asked:
            text = "I'm not sure what you are asking me."
        elif self.params.structured and request.json_schema:
            values = [self.true_answer(request.seed, ins, item) for ins, item in asked]
            body = {"answer": values[0]} if len(values) == 1 else {"answers": values}
            text = json.dumps(body)
        else:
            text = self._chat_text(request.seed, asked, attempt)
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

    def _chat_text(self, seed, asked, attempt) -> str:
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
                f"{n}. {self.true_answer(seed, ins, item)}"
                for n, (ins, item) in enumerate(asked, 1)
            ]
            return "\n".join(lines)
        instrument, item = asked[0]
        value = self.true_answer(seed, instrument, item)
        label = instrument.label_for(value)
        style = int(_uniform(seed, item.id, "style") * 5)
        return [
            f"{value}",
            f"I'd say {value} — {label.lower()}.",
            f"{value} ({label})",
            f"My answer: {value}",
            f"{label}.",
        ][style]
