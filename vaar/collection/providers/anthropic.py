"""Anthropic Messages API. The system prompt is a top-level field, `max_tokens` is required,
and there is no seed (recorded as such); no JSON-schema output, so answers are parsed from text.

Prompt caching (params.prompt_cache, on by default): a session re-sends its whole history each
turn, so the request carries `cache_control` breakpoints (see `breakpoints`) on the end of the
prompt (written to the cache, read by the next turn) and on the end of the previous request's
prompt (read now), plus the system prompt when it is long enough to be cached alone. At most
MAX_BREAKPOINTS (the API's limit) are set, and none on a prefix shorter than the model's
minimum cacheable length (params.cache_min_tokens). The message texts are sent exactly as
stored, so each prefix is byte-identical from turn to turn. A cached prefix lives 5 minutes
(refreshed by each hit); params.cache_ttl = "1h" asks for an hour, for --batch waves.

Extended thinking (params.thinking_budget): sent as `thinking: {type: enabled, budget_tokens}`,
never with temperature or top_k (the config refuses them). The answer is parsed from the text
blocks only; the thinking blocks count as reasoning tokens (estimated from their length: the
API bills them inside output_tokens without a separate count).
"""

from __future__ import annotations

from vaar.collection.providers import ChatReply, ChatRequest, ProviderError
from vaar.collection.providers.http import HttpProvider
from vaar.collection.store import estimate_tokens

MAX_BREAKPOINTS = 4  # cache_control blocks allowed per request


def breakpoints(system: list[dict], messages: list[dict], min_tokens: int) -> list[int]:
    """Where to put cache_control: indices into `messages`, -1 for the system prompt. The end
    of the prompt, the end of the previous request's prompt (the user message before the last
    one) and the system prompt, each only when the prefix it closes is cacheable."""
    prefix = estimate_tokens(system)
    sizes = []  # estimated tokens of the prefix ending with each message
    for m in messages:
        prefix += estimate_tokens([m])
        sizes.append(prefix)
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    wanted = [len(messages) - 1, *users[-2:-1]]
    chosen = [i for i in dict.fromkeys(wanted) if i >= 0 and sizes[i] >= min_tokens]
    if system and estimate_tokens(system) >= min_tokens:
        chosen.append(-1)
    return chosen[:MAX_BREAKPOINTS]


def _cached(content: str, ttl: str) -> list[dict]:
    control = {"type": "ephemeral"} if ttl == "5m" else {"type": "ephemeral", "ttl": ttl}
    return [{"type": "text", "text": content, "cache_control": control}]


class AnthropicProvider(HttpProvider):
    name = "anthropic"
    supports_json_schema = False
    default_base_url = "https://api.anthropic.com"
    default_key_env = "ANTHROPIC_API_KEY"

    def endpoint(self) -> str:
        return f"{self.base_url}/v1/messages"

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": self.params.version}
        if self._key:
            headers["x-api-key"] = self._key
        return headers

    def body(self, request: ChatRequest) -> dict:
        p = self.params
        system = "\n\n".join(m["content"] for m in request.messages if m["role"] == "system")
        messages = [m for m in request.messages if m["role"] != "system"]
        marks: list[int] = []
        if p.prompt_cache:
            head = [{"role": "system", "content": system}] if system else []
            marks = breakpoints(head, messages, p.cache_min_tokens)
        body: dict = {
            "model": self.model_id,
            "max_tokens": p.max_tokens,
            "messages": [
                {**m, "content": _cached(m["content"], p.cache_ttl)} if i in marks else m
                for i, m in enumerate(messages)
            ],
        }
        if system:
            body["system"] = _cached(system, p.cache_ttl) if -1 in marks else system
        for key in ("temperature", "top_p", "top_k"):
            if getattr(p, key) is not None:
                body[key] = getattr(p, key)
        if p.thinking_budget is not None:
            body["thinking"] = {"type": "enabled", "budget_tokens": p.thinking_budget}
        return body

    def reply(self, data: dict, sent: dict) -> ChatReply:
        blocks = data.get("content") if isinstance(data, dict) else None
        if not isinstance(blocks, list):
            raise ProviderError(
                f"{self.spec.name}: reply without content from {self.endpoint()}: "
                f"{str(data)[:200]!r}"
            )
        text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        thoughts = "".join(b.get("thinking", "") for b in blocks if b.get("type") == "thinking")
        usage = data.get("usage") or {}
        read = int(usage.get("cache_read_input_tokens") or 0)
        written = int(usage.get("cache_creation_input_tokens") or 0)
        return ChatReply(
            text=text,
            request=sent,
            meta={
                "id": data.get("id"),
                "model": data.get("model"),
                "finish_reason": data.get("stop_reason"),
                "usage": usage,
            },
            # input_tokens counts only the tokens after the last cache breakpoint
            prompt_tokens=int(usage.get("input_tokens") or 0) + read + written,
            completion_tokens=int(usage.get("output_tokens") or 0),
            cache_read_tokens=read,
            cache_write_tokens=written,
            reasoning_tokens=min(int(usage.get("output_tokens") or 0), len(thoughts) // 4),
        )
