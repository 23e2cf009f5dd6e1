"""Reply-cache keys, computed incrementally: the cost of a turn's key does not grow with the
session's history.

The key is, as it always was, the sha256 of the sorted JSON (``json.dumps(..., sort_keys=True)``)
of {provider, base URL, model, resolved params, seed, replicate, instrument hash, the full
message list} (docs/collection.md), so caches written before this module still hit. That JSON
is a fixed head (the keys sorted before "messages"), the messages joined by ", ", and a fixed
tail; sha256 is a stream, so a session keeps the hash state after its history and each request
only adds its own turn's messages. Every message is serialised once, when its turn is done.
"""

from __future__ import annotations

import hashlib
import json

_SENTINEL = "\x00vaar-messages\x00"
_string = json.encoder.encode_basestring_ascii  # what json.dumps writes for a str (in C)


def fragment(message: dict) -> bytes:
    """One message exactly as it appears inside the sorted JSON of the whole key: for the
    usual {"role", "content"} message of strings written directly, else by json.dumps."""
    if len(message) == 2:
        content, role = message.get("content"), message.get("role")
        if type(content) is str and type(role) is str:
            return f'{{"content": {_string(content)}, "role": {_string(role)}}}'.encode()
    return json.dumps(message, sort_keys=True).encode()


def reply_key(fields: dict, messages: list[dict]) -> str:
    """The key of one request, all at once (the definition SessionKeys must agree with)."""
    whole = json.dumps({**fields, "messages": messages}, sort_keys=True)
    return hashlib.sha256(whole.encode()).hexdigest()


class SessionKeys:
    """The reply-cache keys of one session's requests. `fields`: everything in the key but the
    messages and the instrument hash (fixed for the session)."""

    def __init__(self, fields: dict, system: list[dict]):
        self._fields = fields
        self._system = [fragment(m) for m in system]
        self._turns: list[list[bytes]] = []  # per done turn, its messages' fragments
        self._heads: dict[str, tuple[bytes, bytes]] = {}  # instrument hash -> (head, tail)
        self._prefix: tuple[str, list[int], object, bool] | None = None

    def add_turn(self, messages: list[dict]) -> None:
        """A turn is done: its messages may be carried as history from now on."""
        self._turns.append([fragment(m) for m in messages])

    def _head_tail(self, instrument_hash: str) -> tuple[bytes, bytes]:
        if instrument_hash not in self._heads:
            whole = json.dumps(
                {**self._fields, "instrument": instrument_hash, "messages": _SENTINEL},
                sort_keys=True,
            )
            head, tail = whole.split(json.dumps(_SENTINEL))
            self._heads[instrument_hash] = (head.encode() + b"[", b"]" + tail.encode())
        return self._heads[instrument_hash]

    def for_turn(self, context: list[int], instrument_hash: str):
        """key(new_messages) for the requests of one turn that carries the done turns
        `context` (indices, in order) after the system prompt. When `context` extends the
        previous turn's (the whole-session history), only the new turns are hashed."""
        head, tail = self._head_tail(instrument_hash)
        last = self._prefix
        if last and last[0] == instrument_hash and context[: len(last[1])] == last[1]:
            h, empty, start = last[2].copy(), last[3], len(last[1])
        else:
            h, empty, start = hashlib.sha256(head), True, 0
            for frag in self._system:
                h.update(frag if empty else b", " + frag)
                empty = False
        for i in context[start:]:
            for frag in self._turns[i]:
                h.update(frag if empty else b", " + frag)
                empty = False
        self._prefix = (instrument_hash, list(context), h, empty)  # h itself is never updated

        def key(new_messages: list[dict]) -> str:
            k, first = h.copy(), empty
            for m in new_messages:
                frag = fragment(m)
                k.update(frag if first else b", " + frag)
                first = False
            k.update(tail)
            return k.hexdigest()

        return key
