"""Pure ASGI middleware: security headers, request ids, access log without query strings.

Starlette's ``BaseHTTPMiddleware`` costs a task per request; these wrap ``send`` instead.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from hearth.web.headers import security_headers

__all__ = ["AccessLogMiddleware", "SecurityHeadersMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("hearth.access")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = security_headers(list(message.get("headers", [])))
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class AccessLogMiddleware:
    """One line per request: method, path (never the query string: it may hold PHI), status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms",
                    scope.get("method"),
                    _route_path(scope),
                    status,
                    (time.perf_counter() - start) * 1000,
                )


def _route_path(scope: Scope) -> str:
    """The path with resource ids replaced by ``:id`` (ids are random, but keep logs minimal)."""
    parts = str(scope.get("path", "")).split("/")
    # /fhir/Type/id/_history/n -> /fhir/Type/:id/_history/:vid
    if len(parts) > 3 and parts[1] == "fhir" and not parts[3].startswith("_"):
        parts[3] = ":id"
    if len(parts) > 5 and parts[4] == "_history":
        parts[5] = ":vid"
    return "/".join(parts)
