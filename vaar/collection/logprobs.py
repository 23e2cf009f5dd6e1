"""The answer's probability distribution, from the token log-probabilities a provider returns
(OpenAI `logprobs` with `top_logprobs`; llama.cpp's server in the same shape).

The answer position is the first generated token that is a number (in free text "4", "I'd say
4", and in JSON `{"answer": 4}` alike); inline thoughts (up to the last `</think>` token) are
skipped. Its top alternatives that are numbers too give the distribution: their probabilities
renormalised over the numbers (`mass` says how much of the token's probability they held), the
expected value and the entropy (in nats). The model run then keeps it only for a one-item turn
(in a block the first number is an item number), over the instrument's options (`for_options`).
"""

from __future__ import annotations

import math


def _number(token: str) -> int | None:
    text = token.strip()
    return int(text) if text.isdigit() and len(text) <= 3 else None


def answer_distribution(content: list[dict] | None) -> dict | None:
    """{"position", "probs": {value: p}, "mass", "expected", "entropy"}, or None when no
    generated token is a number (or the provider returned no log-probabilities)."""
    content = content or []
    ends = [i for i, t in enumerate(content) if "</think>" in str(t.get("token", ""))]
    start = ends[-1] + 1 if ends else 0  # a local reasoning model's inline thoughts: skipped
    for position, token in enumerate(content[start:], start):
        if _number(token.get("token", "")) is None:
            continue
        alternatives = token.get("top_logprobs") or [token]
        probs: dict[int, float] = {}
        for alt in alternatives:
            value, logprob = _number(alt.get("token", "")), alt.get("logprob")
            if value is not None and isinstance(logprob, int | float) and math.isfinite(logprob):
                probs[value] = probs.get(value, 0.0) + math.exp(logprob)
        mass = sum(probs.values())
        if mass <= 0:
            return None
        probs = {v: p / mass for v, p in sorted(probs.items())}
        return {
            "position": position,
            "probs": {str(v): round(p, 6) for v, p in probs.items()},
            "mass": round(min(mass, 1.0), 6),
            "expected": round(sum(v * p for v, p in probs.items()), 6),
            "entropy": round(-sum(p * math.log(p) for p in probs.values() if p > 0), 6),
        }
    return None


def for_options(distribution: dict | None, values: list[int]) -> dict | None:
    """The distribution over the response options only, renormalised (`mass` then says how
    much of the answer token's probability the options held); None if it gave them none."""
    if not distribution:
        return None
    kept = {v: distribution["probs"].get(str(v), 0.0) * distribution["mass"] for v in values}
    mass = sum(kept.values())
    if mass <= 0:
        return None
    probs = {v: p / mass for v, p in kept.items() if p > 0}
    return {
        "position": distribution["position"],
        "probs": {str(v): round(p, 6) for v, p in probs.items()},
        "mass": round(mass, 6),
        "expected": round(sum(v * p for v, p in probs.items()), 6),
        "entropy": round(-sum(p * math.log(p) for p in probs.values()), 6),
    }
