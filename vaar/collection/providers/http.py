"""What every HTTP provider shares: the API key from the environment, one aiohttp session, and
the ONE retry layer (tenacity): exponential backoff with jitter on 429, 5xx, timeouts and
dropped connections, honouring Retry-After, bounded in attempts and in total time.

A provider module only builds the request body and reads the reply (`body`, `reply`); errors
that retrying cannot fix (bad key, unknown model, a malformed request) fail at once. The batch
clients (vaar.collection.batch) send their uploads, creations and polls through the same
`call`, so live and batch requests share one retry policy.
"""

from __future__ import annotations

import email.utils
import os
import time
from typing import ClassVar

import aiohttp
import orjson
from aiohttp.payload import BytesPayload
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from vaar.collection.providers import ChatReply, ChatRequest, Provider, ProviderError
from vaar.errors import ConfigError


class RetryableError(Exception):
    """A failure worth another try: 429, 5xx, a timeout or a dropped connection."""

    def __init__(self, reason: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.reason = reason  # "429" | "5xx" | "timeout" | "connection" | "dropped"
        self.retry_after = retry_after


class FatalProviderError(ProviderError):
    """Retrying cannot help and no other session of this model will fare better (bad key,
    unknown model, unreachable server): the runner stops the model with this message."""

    fatal = True


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds (RFC 9110: delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _Wait:
    """Exponential backoff with jitter, but never shorter than the server's Retry-After."""

    def __init__(self, initial: float, maximum: float):
        self.backoff = wait_exponential(multiplier=initial, max=maximum) + wait_random(0, initial)

    def __call__(self, state) -> float:
        wait = self.backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        return wait


class HttpProvider(Provider):
    default_base_url: ClassVar[str]
    default_key_env: ClassVar[str]

    def __init__(self, spec, instruments, hooks=None):
        super().__init__(spec, instruments, hooks)
        self._session: aiohttp.ClientSession | None = None
        self._key: str | None = None

    @property
    def base_url(self) -> str:
        return (self.spec.base_url or self.default_base_url).rstrip("/")

    def key_env(self) -> str | None:
        """The variable holding the key: the configured one, else the provider's usual one
        when talking to the provider's own API (local servers need no key)."""
        if self.spec.api_key_env:
            return self.spec.api_key_env
        return None if self.spec.base_url else self.default_key_env

    def resolved_params(self) -> dict:
        return self.params.resolved()

    async def start(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"model {self.spec.name!r}: base_url {self.base_url!r} must start with "
                "http:// or https://"
            )
        env = self.key_env()
        if env:
            key = os.environ.get(env, "").strip()
            if not key:
                raise ConfigError(
                    f"model {self.spec.name!r}: the API key variable {env} is not set "
                    "(set it in the environment; keys never go in the study file)"
                )
            self._key = key
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.spec.concurrency),
            timeout=aiohttp.ClientTimeout(total=self.params.timeout),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- subclass hooks ------------------------------------------------------------------
    def endpoint(self) -> str:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def body(self, request: ChatRequest) -> dict:
        raise NotImplementedError

    def reply(self, data: dict, sent: dict) -> ChatReply:
        raise NotImplementedError

    # -- the request ---------------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> ChatReply:
        body = self.body(request)
        data = await self.call("POST", self.endpoint(), body)
        return self.reply(data, self.sent(body))

    @staticmethod
    def sent(body: dict) -> dict:
        """The body as recorded per turn: without the messages (stored on their own)."""
        return {k: v for k, v in body.items() if k not in ("messages", "system")}

    async def call(self, method: str, url: str, body=None, *, form=None, raw: bool = False):
        """One API request with the retry policy: `body` as JSON or `form` (aiohttp.FormData,
        rebuilt per attempt by calling it), the reply as JSON or, with `raw`, as bytes."""
        try:  # the common case: one plain request, none of the retry machinery's cost
            return await self._request(method, url, body, form, raw)
        except RetryableError as exc:
            return await self._retry(lambda: self._request(method, url, body, form, raw), exc)

    async def _retry(self, attempt_once, failure: RetryableError):
        """The retry policy, all of it in tenacity: `failure` counts as attempt 1."""
        p = self.params
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RetryableError),
            stop=stop_after_attempt(p.max_retries + 1) | stop_after_delay(p.max_retry_time),
            wait=_Wait(p.backoff_initial, p.backoff_max),
            before_sleep=lambda state: self.hooks.retry(state.outcome.exception().reason),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if failure is not None:
                        first, failure = failure, None
                        raise first
                    return await attempt_once()
        except RetryableError as exc:
            tries = retrying.statistics.get("attempt_number", 1)
            message = f"{self.spec.name}: {exc} (gave up after {tries} attempt(s))"
            if exc.reason == "connection":
                raise FatalProviderError(message) from None
            raise ProviderError(message) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _request(self, method: str, url: str, body, form, raw: bool):
        try:
            payload = None
            if form is not None:
                payload = form()
            elif body is not None:  # (a payload with its type: no headers to merge)
                payload = BytesPayload(orjson.dumps(body), content_type="application/json")
            async with self._session.request(
                method, url, data=payload, headers=self.headers()
            ) as resp:
                data = await resp.read()
                if resp.status >= 400:
                    raise self._refused(url, resp, data.decode("utf-8", "replace"))
                if raw:
                    return data
                try:
                    return orjson.loads(data)
                except ValueError:
                    text = data.decode("utf-8", "replace")
                    raise RetryableError(
                        "5xx", f"{url} answered with something that is not JSON: {text[:100]!r}"
                    ) from None
        except TimeoutError:
            raise RetryableError(
                "timeout", f"no reply from {url} within {self.params.timeout} s"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise RetryableError("connection", f"cannot reach {url}: {exc}") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
            raise RetryableError("dropped", f"connection to {url} dropped: {exc!r}") from None
        except aiohttp.ClientError as exc:  # e.g. an invalid URL: no retry can help
            raise FatalProviderError(
                f"{self.spec.name}: request to {url} failed: {exc!r}"
            ) from None

    def _refused(self, url: str, resp, text: str) -> Exception:
        """The error for an HTTP status of 400 or more: retryable (429, 5xx) or not."""
        if resp.status == 429:
            return RetryableError(
                "429",
                f"rate limited by {url} (HTTP 429)",
                retry_after_seconds(resp.headers.get("Retry-After")),
            )
        if resp.status >= 500:
            return RetryableError(
                "5xx",
                f"server error from {url}: HTTP {resp.status} {text[:200]!r}",
                retry_after_seconds(resp.headers.get("Retry-After")),
            )
        if resp.status in (401, 403):
            return FatalProviderError(
                f"{self.spec.name}: {url} refused the API key (HTTP {resp.status}); "
                f"check {self.key_env() or 'api_key_env'}"
            )
        if resp.status == 404:
            return FatalProviderError(
                f"{self.spec.name}: {url} answered 404: wrong base_url or model "
                f"{self.model_id!r}? {text[:200]!r}"
            )
        return ProviderError(
            f"{self.spec.name}: request rejected by {url}: HTTP {resp.status} {text[:300]!r}"
        )
