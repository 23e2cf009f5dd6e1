"""The answer's probability distribution, from the token log-probabilities a provider returns
(OpenAI `logprobs` with `top_logprobs`; llama.cpp's server in the same shape).

The answer position is the first generated token that is a number (in free text "4", "I'd say
4", and in JSON `{"answer": 4}` alike). Its top alternatives that are numbers too, the
response options a model could have written there, give the distribution: their
probabilities renormalised over the numbers (`mass` says how much of the token's probability
they held), the expected value and the entropy (in nats). Inline thoughts (up to the last
`</think>` token) are skipped. The numbers are not checked against
the instrument's options here: an out-of-scale number keeps its (usually tiny) share.
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
