"""Anthropic Messages API. The system prompt is a top-level field, `max_tokens` is required,
and there is no seed (recorded as such); no JSON-schema output, so answers are parsed from text.
"""

from __future__ import annotations

from vaar.collection.providers import ChatReply, ChatRequest, ProviderError
from vaar.collection.providers.http import HttpProvider


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
        body: dict = {
            "model": self.model_id,
            "max_tokens": p.max_tokens,
            "messages": [m for m in request.messages if m["role"] != "system"],
        }
        if system:
            body["system"] = system
        for key in ("temperature", "top_p", "top_k"):
            if getattr(p, key) is not None:
                body[key] = getattr(p, key)
        return body

    def reply(self, data: dict, sent: dict) -> ChatReply:
        blocks = data.get("content") if isinstance(data, dict) else None
        if not isinstance(blocks, list):
            raise ProviderError(
                f"{self.spec.name}: reply without content from {self.endpoint()}: "
                f"{str(data)[:200]!r}"
            )
        text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
        usage = data.get("usage") or {}
        return ChatReply(
            text=text,
            request=sent,
            meta={
                "id": data.get("id"),
                "model": data.get("model"),
                "finish_reason": data.get("stop_reason"),
                "usage": usage,
            },
            prompt_tokens=int(usage.get("input_tokens") or 0),
            completion_tokens=int(usage.get("output_tokens") or 0),
        )
