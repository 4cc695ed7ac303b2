"""The gateway's front door: a pure ASGI middleware that refuses what it can before a route, or the body, is touched.

    Host header  anonymous on loopback: only loopback names or --allowed-host (DNS rebinding)  → 400 invalid_host
    API key      every path but /health and /openapi.json                                      → 401, body unread
    quota        POST /v1/chat/completions: tasks in flight, requests per minute, tokens/day   → 429 + Retry-After
    body size    a Content-Length over the limit at once; a chunked body as soon as it passes  → 413

FastAPI reads and parses the whole body before any dependency runs, so a key checked in a dependency lets anyone
make the gateway hold (and parse) a body of any size. Here the body is read only for an admitted caller, counted
while it arrives, and handed to the route as one message, never larger than the limit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from fleet_gateway.openai_api import error_body
from fleet_gateway.quotas import QuotaBook, QuotaExceeded
from shared.errors import SymphonyError
from shared.http_auth import Authenticator, Unauthorized, host_allowed

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
PUBLIC_PATHS = frozenset({"/health", "/openapi.json"})
TASK_PATHS = frozenset({"/v1/chat/completions"})


@dataclass(frozen=True)
class GatewayLimits:
    """What the front door enforces besides keys and quotas (CLI: --max-body-bytes, --allowed-host)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    allowed_hosts: frozenset[str] = frozenset()


class Refused(SymphonyError):
    """A request answered at the door, in OpenAI's error shape."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}

    def response(self) -> JSONResponse:
        # The rest of an unread body is discarded by the server as it arrives (uvicorn reads on, keeping nothing,
        # until the keep-alive timeout), so a client still sending gets this answer instead of a reset.
        body = error_body(self.status, self.message, self.code)
        if self.status == 413:
            body["error"]["type"] = "invalid_request_error"  # what OpenAI's API calls an oversized request
        return JSONResponse(body, self.status, self.headers)


class RequestGuard:
    """Host, key, quota and body size checks in front of the gateway's routes."""

    def __init__(self, app: ASGIApp, auth: Authenticator, quotas: QuotaBook, limits: GatewayLimits) -> None:
        self.app, self.auth, self.quotas, self.limits = app, auth, quotas, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        is_task = scope["method"] == "POST" and scope["path"] in TASK_PATHS
        account = None
        try:
            account = self._caller(scope, headers)
            has_body = self._check_declared_size(headers)
            if is_task:
                self._admit_task(account)
        except Refused as refusal:
            await self._refuse(refusal, account, scope, receive, send)
            return
        try:
            if has_body:
                body = await self._read_body(receive)
                if body is None:
                    return  # the caller hung up
                receive = _replay(body, receive)
        except Refused as refusal:
            await self._refuse(refusal, account, scope, receive, send)
            if is_task:
                self.quotas.release(account)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            if is_task:
                self.quotas.release(account)

    async def _refuse(self, refusal: Refused, account: Any, scope: Scope, receive: Receive, send: Send) -> None:
        if refusal.status == 413:
            self.quotas.refuse(account, "body_too_large")
        await refusal.response()(scope, receive, send)

    def _caller(self, scope: Scope, headers: Headers) -> Any:
        """The caller's account (None: anonymous or the login), or Refused for a foreign Host or a bad key."""
        if self.auth.anonymous and not host_allowed(headers.get("host"), self.limits.allowed_hosts):
            raise Refused(400, "this gateway answers only requests addressed to localhost", "invalid_host")
        if scope["path"] in PUBLIC_PATHS:
            return None
        try:
            return self.auth.check(headers.get("authorization"))
        except Unauthorized as error:
            raise Refused(401, str(error), "invalid_api_key", {"WWW-Authenticate": "Bearer"}) from None

    def _admit_task(self, account: Any) -> None:
        try:
            self.quotas.admit(account)
        except QuotaExceeded as error:
            raise Refused(429, str(error), "rate_limit_exceeded", {"Retry-After": str(error.retry_after_s)}) from None

    def _check_declared_size(self, headers: Headers) -> bool:
        """Whether a body follows; Refused at once when its declared length is over the limit."""
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.limits.max_body_bytes:
            raise _too_large(self.limits.max_body_bytes)
        return (length is not None and length != "0") or "transfer-encoding" in headers

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or Refused as soon as it passes the limit; None when the caller hung up."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise _too_large(self.limits.max_body_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _too_large(limit: int) -> Refused:
    return Refused(413, f"the request body is larger than this gateway's limit of {limit} bytes", "body_too_large")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the route the body already read, then the connection's own messages (disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
