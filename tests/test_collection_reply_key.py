"""The reply-cache key, hashed incrementally per session (vaar.collection.reply_key), equals the
key of the whole request computed at once, for every history policy, re-asks, instrument
switches and any text; and that key is the one caches written before it used."""

import hashlib
import json
import random

import pytest

from vaar.collection.reply_key import SessionKeys, fragment, reply_key

FIELDS = {
    "provider": "openai",
    "base_url": "http://127.0.0.1:1/v1",
    "model": "m",
    "params": {"temperature": 0.7, "max_tokens": 64, "stop": ["\n"], "extra": {"b": 1, "a": [2]}},
    "seed": 12345,
    "replicate": 3,
}
TEXTS = ["3", "Agree (4)", 'quote " and \\ back', "üñíçødé ✓ 中文", "", "line\nbreak\ttab", "\x00"]


def literal_v1(fields, instrument, messages):
    """The key as vaar has always defined it (docs/collection.md): caches rely on it."""
    key = {**fields, "instrument": instrument, "messages": messages}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def message(rng, role):
    return {"role": role, "content": rng.choice(TEXTS) + str(rng.random())}


def contexts(policy, n_done, rng):
    if policy == "whole":
        return list(range(n_done))
    if policy == "last_k":
        return list(range(max(0, n_done - 2), n_done))
    return sorted(rng.sample(range(n_done), rng.randint(0, n_done)))  # by instrument, token cap


@pytest.mark.parametrize("policy", ["whole", "last_k", "subset"])
@pytest.mark.parametrize("seed", range(8))
def test_incremental_key_equals_the_whole_request_key(policy, seed):
    rng = random.Random(seed)
    system = [{"role": "system", "content": rng.choice(TEXTS)}]
    keys = SessionKeys(FIELDS, system)
    done: list[list[dict]] = []
    for turn in range(12):
        instrument = f"sha-{turn // 5}"  # switches twice per session
        context = contexts(policy, len(done), rng)
        history = system + [m for i in context for m in done[i]]
        key_of = keys.for_turn(context, instrument)
        messages = [message(rng, "user")]
        for _attempt in range(rng.randint(1, 3)):  # re-asks grow the turn's own messages
            expected = literal_v1(FIELDS, instrument, history + messages)
            assert (
                key_of(messages)
                == expected
                == reply_key({**FIELDS, "instrument": instrument}, history + messages)
            )
            messages += [message(rng, "assistant"), message(rng, "user")]
        messages.pop()
        done.append(messages)
        keys.add_turn(messages)


def test_keys_differ_by_every_field():
    system = [{"role": "system", "content": "s"}]
    msgs = [{"role": "user", "content": "q"}]
    base = SessionKeys(FIELDS, system).for_turn([], "i")(msgs)
    assert SessionKeys(FIELDS, system).for_turn([], "j")(msgs) != base
    assert SessionKeys({**FIELDS, "seed": 1}, system).for_turn([], "i")(msgs) != base
    assert SessionKeys(FIELDS, [{"role": "system", "content": "t"}]).for_turn([], "i")(msgs) != base
    assert SessionKeys(FIELDS, system).for_turn([], "i")(msgs + msgs) != base


def test_a_message_fragment_is_its_sorted_json_whatever_its_shape():
    shapes = [{"role": "user", "content": t} for t in TEXTS] + [
        {"content": "x", "role": "user"},  # keys in the other order
        {"role": "user", "content": [{"type": "text", "text": "ü", "cache_control": {}}]},
        {"role": "assistant", "content": "3", "name": "n"},
        {"role": "user", "content": None},
        {"role": 1, "content": "x"},
    ]
    for m in shapes:
        assert fragment(m) == json.dumps(m, sort_keys=True).encode(), m
