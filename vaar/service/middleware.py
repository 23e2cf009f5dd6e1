"""The middlewares that make the service safe to expose, outermost first (MIDDLEWARES):
security headers; errors as JSON (never a traceback); per-client rate limits; the optional
bearer token. And the Content-Security-Policy of each kind of response."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import OrderedDict

from aiohttp import web
from aiolimiter import AsyncLimiter

from vaar.errors import VaarError
from vaar.service import uploads
from vaar.service.settings import ServiceSettings

log = logging.getLogger("vaar.service")
TOKEN_COOKIE = "vaar_token"
PUBLIC_API = ("/api/health", "/api/openapi.json", "/api/session")

SETTINGS = web.AppKey("settings", ServiceSettings)
LIMITS = web.AppKey("limits", "RateLimits")

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# Reports are self-contained (inline CSS, inline SVG/PNG, no scripts). `sandbox` gives them an
# opaque origin, so even a value that slipped past escaping could not reach the API or cookies.
REPORT_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox allow-popups"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"


class ApiError(VaarError):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


@web.middleware
async def security_headers(request: web.Request, handler):
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", API_CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def error_response(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": message, "status": status}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler):
    """Every error is `{"error": message}`; unexpected ones are logged, never sent."""
    try:
        return await handler(request)
    except (ApiError, uploads.UploadError) as exc:
        return error_response(exc.status, str(exc), getattr(exc, "headers", None))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = {404: "not found", 405: f"method {request.method} not allowed here"}.get(
            exc.status, exc.reason
        )
        return error_response(
            exc.status,
            message,
            {"Allow": exc.headers.get("Allow", "")} if exc.status == 405 else None,
        )
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal server error; the server log has the details")


class RateLimits:
    """Token buckets per client address: one for all API requests, one for uploads."""

    def __init__(self, settings: ServiceSettings, max_clients: int = 10000):
        self.settings = settings
        self.max_clients = max_clients
        self._buckets: OrderedDict[tuple[str, str], AsyncLimiter] = OrderedDict()

    async def take(self, client: str, kind: str) -> None:
        per_minute = (
            self.settings.uploads_per_minute
            if kind == "upload"
            else self.settings.requests_per_minute
        )
        key = (client, kind)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = AsyncLimiter(per_minute, 60)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(key)
        if not bucket.has_capacity():
            what = "uploads" if kind == "upload" else "requests"
            raise ApiError(
                429,
                f"rate limit: at most {per_minute:g} {what} per minute per client; retry later",
                {"Retry-After": str(max(1, round(60 / per_minute)))},
            )
        await bucket.acquire()


@web.middleware
async def rate_limit(request: web.Request, handler):
    if request.path.startswith("/api/"):
        limits = request.app[LIMITS]
        client = request.remote or "unknown"
        await limits.take(client, "request")
        if request.method == "POST" and request.path == "/api/analyses":
            await limits.take(client, "upload")
    return await handler(request)


def _presented_token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(TOKEN_COOKIE)


@web.middleware
async def bearer_auth(request: web.Request, handler):
    token = request.app[SETTINGS].token
    if token and request.path.startswith("/api/") and request.path not in PUBLIC_API:
        presented = _presented_token(request)
        if presented is None or not hmac.compare_digest(presented.encode(), token.encode()):
            raise ApiError(
                401,
                "missing or wrong bearer token (send 'Authorization: Bearer <token>')",
                {"WWW-Authenticate": 'Bearer realm="vaar"'},
            )
    return await handler(request)


MIDDLEWARES = [security_headers, json_errors, rate_limit, bearer_auth]
