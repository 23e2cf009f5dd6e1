"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM proxies).

`base_url` is the API root including `/v1` (default https://api.openai.com/v1). The session
seed goes in `seed`; structured output uses a JSON-schema `response_format`.

OpenAI caches prompt prefixes by itself (from 1024 tokens on): the history goes first and is
sent exactly as stored, so each turn's prompt starts with the previous one byte for byte; the
reply's `prompt_tokens_details.cached_tokens` says how much was read from the cache.

Reasoning models (params.reasoning_effort): sent with `reasoning_effort` and
`max_completion_tokens` (which counts the reasoning too), never with temperature or top_p
(the config refuses them); `completion_tokens_details.reasoning_tokens` is recorded. Servers
that return a local reasoning model's thoughts inline (`<think>...</think>`, as llama.cpp and
Ollama do for Qwen3 or DeepSeek-R1 distills) have them cut off: the answer is parsed from the
final text only, and the thoughts count as reasoning tokens when the server does not say.

params.logprobs = N asks for `logprobs` with `top_logprobs` N; the answer's distribution over
the numbers at the answer position (vaar.collection.logprobs) is stored with the turn's
metadata as `answer_distribution`.
"""

from __future__ import annotations

import re

from vaar.collection.logprobs import answer_distribution
from vaar.collection.providers import ChatReply, ChatRequest, ProviderError
from vaar.collection.providers.http import HttpProvider

THINK_END = "</think>"


def final_text(content: str) -> tuple[str, str]:
    """(the answer, the inline reasoning before it) of a reply's content."""
    if THINK_END not in content:
        return content, ""
    thoughts, _, answer = content.rpartition(THINK_END)
    return answer.strip(), re.sub(r"</?think>", "", thoughts).strip()


class OpenAIProvider(HttpProvider):
    name = "openai"
    supports_json_schema = True
    default_base_url = "https://api.openai.com/v1"
    default_key_env = "OPENAI_API_KEY"

    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._key}"} if self._key else {}

    def body(self, request: ChatRequest) -> dict:
        p = self.params
        body: dict = {"model": self.model_id, "messages": request.messages}
        if p.reasoning_effort is not None:
            body["reasoning_effort"] = p.reasoning_effort
            body["max_completion_tokens"] = p.max_tokens
        else:
            body[p.max_tokens_field] = p.max_tokens
        if p.temperature is not None:
            body["temperature"] = p.temperature
        if p.top_p is not None:
            body["top_p"] = p.top_p
        if p.send_seed:
            body["seed"] = request.seed
        if p.logprobs is not None:
            body["logprobs"] = True
            body["top_logprobs"] = p.logprobs
        if request.json_schema is not None and p.json_format == "json_object":
            body["response_format"] = {"type": "json_object", "schema": request.json_schema}
        elif request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.json_schema, "strict": True},
            }
        body.update(p.extra)
        return body

    def reply(self, data: dict, sent: dict) -> ChatReply:
        try:
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (KeyError, IndexError, TypeError, AttributeError):
            raise ProviderError(
                f"{self.spec.name}: reply without choices from {self.endpoint()}: "
                f"{str(data)[:200]!r}"
            ) from None
        text, thoughts = final_text(message.get("content") or message.get("refusal") or "")
        usage = data.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or {}
        return ChatReply(
            text=text,
            request=sent,
            meta={
                "id": data.get("id"),
                "model": data.get("model"),
                "system_fingerprint": data.get("system_fingerprint"),
                "finish_reason": choice.get("finish_reason"),
                "usage": usage,
                **self._distribution(choice),
            },
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cache_read_tokens=int(details.get("cached_tokens") or 0),
            reasoning_tokens=int(completion_details.get("reasoning_tokens") or 0)
            or len(thoughts) // 4,
        )

    def _distribution(self, choice: dict) -> dict:
        if self.params.logprobs is None:
            return {}
        content = (choice.get("logprobs") or {}).get("content")
        return {"answer_distribution": answer_distribution(content)}
