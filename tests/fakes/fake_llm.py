"""A fault-injecting fake LLM API on loopback: real aiohttp, real HTTP, real faults.

It speaks OpenAI chat completions (`POST /v1/chat/completions`) and Anthropic Messages
(`POST /v1/messages`) and answers like a respondent: the reply text comes from vaar's simulated
provider (seeded by the request's `seed`, or for Anthropic by the conversation's opening), so
answers are deterministic and a retried request gets the same answer. Faults are drawn at
random per request, at configurable rates: latency, 429 with Retry-After, 500, a reply slower
than the client's timeout, a dropped connection, garbage text and refusals.

It caches prompt prefixes as the two APIs document (`PromptCache`): OpenAI-style, any prefix
of whole messages seen before and at least CACHE_MIN_TOKENS long is read from the cache
(`prompt_tokens_details.cached_tokens`, in steps of 128 tokens); Anthropic-style, only prefixes
ending at a `cache_control` breakpoint are written (`cache_creation_input_tokens`) and read
(`cache_read_input_tokens`), and `input_tokens` counts the tokens after the last breakpoint.
Tokens are counted as vaar estimates them (~4 characters per token plus 4 per message).

`FakeLLM(...).start()` runs the server in a background thread (so it serves blocking tests,
asyncio tests and subprocesses alike) and returns its base URL; `python -m tests.fakes.fake_llm`
runs it in a process of its own (for benchmarks).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from vaar.collection.providers import ChatRequest
from vaar.collection.providers.simulated import SimulatedProvider
from vaar.collection.sessions import derive_seed
from vaar.collection.store import estimate_tokens
from vaar.config import ModelSpec

CACHE_MIN_TOKENS = 1024  # both APIs' shortest cacheable prefix (Anthropic Sonnet/Opus)


def token_logprobs(text: str, top: int) -> list[dict]:
    """OpenAI-style `logprobs.content` for `text`: each number token is the likeliest of its
    neighbours (p 0.7 itself, 0.12 each neighbour, the rest on a word)."""
    import math
    import re

    out = []
    for piece in re.findall(r"\d+|\D+", text):
        alternatives = [(piece, 0.0)]
        if piece.isdigit():
            v = int(piece)
            alternatives = [(piece, math.log(0.7)), (str(v + 1), math.log(0.12))]
            if v > 0:
                alternatives.append((str(v - 1), math.log(0.12)))
            alternatives.append((" I", math.log(0.06)))
        out.append(
            {
                "token": piece,
                "logprob": alternatives[0][1],
                "top_logprobs": [{"token": t, "logprob": lp} for t, lp in alternatives[:top]],
            }
        )
    return out


def plain(message: dict) -> dict:
    """A message with its content as one string (Anthropic content blocks joined)."""
    content = message["content"]
    if isinstance(content, list):
        content = "".join(b.get("text", "") for b in content if b.get("type") == "text")
    return {"role": message["role"], "content": content}


def marked(message: dict) -> bool:
    content = message["content"]
    return isinstance(content, list) and any("cache_control" in b for b in content)


class PromptCache:
    """The prefixes a provider has cached, by the hash of their messages."""

    def __init__(self):
        self.prefixes: set[str] = set()

    @staticmethod
    def _prefixes(messages: list[dict]):
        """(index, tokens, hash) of each prefix messages[: index + 1]."""
        digest, tokens = hashlib.sha256(), 0
        for i, m in enumerate(messages):
            digest.update(json.dumps(plain(m), sort_keys=True).encode())
            tokens += estimate_tokens([plain(m)])
            yield i, tokens, digest.copy().hexdigest()

    def automatic(self, messages: list[dict]) -> int:
        """OpenAI: tokens read from the cache; every long enough prefix is cached."""
        read = 0
        for _, tokens, key in self._prefixes(messages):
            if tokens < CACHE_MIN_TOKENS:
                continue
            if key in self.prefixes:
                read = tokens
            self.prefixes.add(key)
        return read // 128 * 128 if read else 0

    def explicit(self, messages: list[dict]) -> tuple[int, int]:
        """Anthropic (the system prompt as messages[0]): (read, written) tokens; only the
        prefixes ending at a breakpoint are looked up and written."""
        read = end = 0
        for i, tokens, key in self._prefixes(messages):
            if not marked(messages[i]) or tokens < CACHE_MIN_TOKENS:
                continue
            if key in self.prefixes:
                read = tokens
            self.prefixes.add(key)
            end = tokens
        return read, max(0, end - read)


@dataclass
class Faults:
    latency: float = 0.0  # seconds added to every reply
    rate_429: float = 0.0
    retry_after: float = 0.05  # seconds, sent in the Retry-After header of a 429
    rate_500: float = 0.0
    rate_timeout: float = 0.0  # reply only after `slow_for` seconds (beyond the client timeout)
    slow_for: float = 2.0
    rate_drop: float = 0.0  # close the connection without a reply
    rate_garbage: float = 0.0  # 200 with text that is no answer
    rate_refusal: float = 0.0  # 200 with a refusal
    first_429: int = 0  # the first n requests get a 429 (to time Retry-After)
    status: int | None = None  # answer every request with this HTTP status (e.g. 401)
    seed: int = 0


def _dumps(value) -> str:
    return orjson.dumps(value).decode()


GARBAGE = ["asdf qwerty", '{"oops": ', "", "The weather is nice today.", "Hmm."]
REFUSAL = "As an AI language model, I don't have personal opinions, so I can't answer that."


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class FakeLLM:
    faults: Faults = field(default_factory=Faults)
    respondent: dict = field(
        default_factory=lambda: {"malformed_rate": 0, "refusal_rate": 0, "structured": True}
    )  # the simulated respondent's params; structured: JSON when a schema is asked for
    counts: Counter = field(default_factory=Counter)
    bodies: list = field(default_factory=list)  # every request body received
    headers: list = field(default_factory=list)  # every request's headers
    keep_bodies: bool = True
    fixed_answer: str | None = None  # answer every item with this text (cheap, for benchmarks)
    cache: PromptCache = field(default_factory=PromptCache)
    think: str | None = None  # OpenAI-style: prefix each reply with <think>this</think>
    prompt_cache: bool = True  # account cached prefixes (off: cheaper, for benchmarks)

    def __post_init__(self):
        from vaar.instruments import list_instruments

        spec = ModelSpec(name="fake", provider="simulated", params=self.respondent)
        self.sim = SimulatedProvider(spec, list_instruments())
        self.rng = random.Random(self.faults.seed)
        self.port = None
        self._loop = None
        self._thread = None
        self._runner = None

    # -- the app ---------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._in_flight])
        app.router.add_post("/v1/chat/completions", self.openai)
        app.router.add_post("/v1/messages", self.anthropic)
        app.router.add_get("/v1/models", self.models)
        return app

    @web.middleware
    async def _in_flight(self, request, handler):
        """Count requests being handled at once (max_in_flight checks a client's cap)."""
        self.counts["in_flight"] += 1
        self.counts["max_in_flight"] = max(self.counts["max_in_flight"], self.counts["in_flight"])
        try:
            return await handler(request)
        finally:
            self.counts["in_flight"] -= 1

    async def models(self, request):
        return web.json_response({"data": [{"id": "fake"}]})

    async def _fault(self, request) -> web.StreamResponse | str | None:
        """Maybe inject a fault: a response to send instead, or 'garbage'/'refusal'."""
        f = self.faults
        if f.latency:
            await asyncio.sleep(f.latency)
        if f.status:
            return web.json_response({"error": {"message": "as configured"}}, status=f.status)
        if self.counts["requests"] <= f.first_429:
            self.counts["429"] += 1
            return web.json_response(
                {"error": {"message": "rate limit"}},
                status=429,
                headers={"Retry-After": f"{f.retry_after:g}"},
            )
        r = self.rng.random()
        for kind, rate in (
            ("429", f.rate_429),
            ("500", f.rate_500),
            ("timeout", f.rate_timeout),
            ("drop", f.rate_drop),
            ("garbage", f.rate_garbage),
            ("refusal", f.rate_refusal),
        ):
            if r < rate:
                self.counts[kind] += 1
                break
            r -= rate
        else:
            return None
        if kind == "429":
            return web.json_response(
                {"error": {"message": "rate limit"}},
                status=429,
                headers={"Retry-After": f"{f.retry_after:g}"},
            )
        if kind == "500":
            return web.json_response({"error": {"message": "internal"}}, status=500)
        if kind == "timeout":
            await asyncio.sleep(f.slow_for)
            return None
        if kind == "drop":
            request.transport.abort()
            return web.Response(status=500)  # never reaches the client
        return kind

    async def _answer(self, messages, seed, schema, fault) -> str:
        if fault == "garbage":
            return self.rng.choice(GARBAGE)
        if fault == "refusal":
            return REFUSAL
        if self.fixed_answer is not None:
            return self.fixed_answer
        reply = await self.sim.complete(ChatRequest(messages, seed, schema))
        return reply.text

    def _record(self, request, body):
        self.counts["requests"] += 1
        if self.keep_bodies:
            self.bodies.append(body)
            self.headers.append(dict(request.headers))

    async def openai(self, request):
        body = await request.json(loads=orjson.loads)
        self._record(request, body)
        if "reasoning_effort" in body and ({"temperature", "top_p", "max_tokens"} & set(body)):
            bad = sorted({"temperature", "top_p", "max_tokens"} & set(body))
            message = f"Unsupported parameter: {bad[0]!r} with reasoning models"
            return web.json_response({"error": {"message": message}}, status=400)
        fault = await self._fault(request)
        if isinstance(fault, web.StreamResponse):
            return fault
        return web.json_response(await self.openai_reply(body, fault), dumps=_dumps)

    async def openai_reply(self, body: dict, fault: str | None = None) -> dict:
        """A chat completion for `body` (also what a fake batch answers per request)."""
        schema = (body.get("response_format") or {}).get("json_schema", {}).get("schema")
        seed = body.get("seed", derive_seed(body["messages"][:2]))
        text = await self._answer(body["messages"], seed, schema, fault)
        reasoning = 48 if "reasoning_effort" in body else 0  # hidden, billed as completion
        if self.think is not None:
            text = f"<think>{self.think}</think>\n{text}"
        self.counts["answered"] += 1
        cached = self.cache.automatic(body["messages"]) if self.prompt_cache else 0
        return {
            "id": f"chatcmpl-{self.counts['answered']}",
            "object": "chat.completion",
            "model": body.get("model", "fake"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    **(
                        {"logprobs": {"content": token_logprobs(text, body["top_logprobs"])}}
                        if body.get("logprobs")
                        else {}
                    ),
                }
            ],
            "usage": {
                "prompt_tokens": estimate_tokens(body["messages"]),
                "completion_tokens": len(text) // 4 + 1 + reasoning,
                "prompt_tokens_details": {"cached_tokens": cached},
                "completion_tokens_details": {"reasoning_tokens": reasoning},
            },
        }

    async def anthropic(self, request):
        body = await request.json()
        self._record(request, body)
        if "max_tokens" not in body:
            return web.json_response({"error": {"message": "max_tokens: required"}}, status=400)
        if "thinking" in body and ({"temperature", "top_k"} & set(body)):
            message = "temperature/top_k may not be set when thinking is enabled"
            return web.json_response({"error": {"message": message}}, status=400)
        fault = await self._fault(request)
        if isinstance(fault, web.StreamResponse):
            return fault
        return web.json_response(await self.anthropic_reply(body, fault))

    async def anthropic_reply(self, body: dict, fault: str | None = None) -> dict:
        """A Messages API reply for `body` (also what a fake batch answers per request)."""
        sent = [{"role": "system", "content": body.get("system", "")}, *body["messages"]]
        messages = [plain(m) for m in sent]
        seed = derive_seed(messages[:2])
        text = await self._answer(messages, seed, None, fault)
        read, written = self.cache.explicit(sent)
        content = [{"type": "text", "text": text}]
        if "thinking" in body:  # thoughts with numbers in them, before the answer
            thinking = "The options run from 1 to 5. Perhaps 2, or 4? On balance: " * 3
            content.insert(0, {"type": "thinking", "thinking": thinking, "signature": "sig"})
        output = sum(len(b.get("text") or b.get("thinking")) // 4 + 1 for b in content)
        self.counts["answered"] += 1
        return {
            "id": f"msg_{self.counts['answered']}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "fake"),
            "content": content,
            "stop_reason": "end_turn",
            "usage": {
                "input_tokens": estimate_tokens(messages) - read - written,
                "cache_creation_input_tokens": written,
                "cache_read_input_tokens": read,
                "output_tokens": output,
            },
        }

    # -- running it ------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, port: int = 0) -> str:
        """Serve in a background thread until stop(); returns the OpenAI-style base URL.
        The socket is bound here (port 0: the kernel picks), so no other process can take
        the port between choosing and binding it."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(1024)
        self.port = sock.getsockname()[1]
        ready = threading.Event()

        def serve():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._runner = web.AppRunner(self.app(), access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.SockSite(self._runner, sock)
            self._loop.run_until_complete(site.start())
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=serve, daemon=True, name="fake-llm")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake LLM server did not start")
        return self.base_url

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def main() -> None:
    """`python -m tests.fakes.fake_llm --port P --latency L`: serve in this process."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--fixed-answer", help="answer every item with this text")
    parser.add_argument("--no-prompt-cache", action="store_true", help="report no cached tokens")
    args = parser.parse_args()
    fake = FakeLLM(
        Faults(latency=args.latency),
        keep_bodies=False,
        fixed_answer=args.fixed_answer,
        prompt_cache=not args.no_prompt_cache,
    )
    web.run_app(
        fake.app(), host="127.0.0.1", port=args.port, access_log=None, print=None, backlog=4096
    )


if __name__ == "__main__":
    main()
