"""Cross-origin requests from browser-based SMART apps (SMART-PK-06; ASVS 3.4.2).

Discovery (``/.well-known/smart-configuration``, ``/fhir/metadata``, ``/oauth/jwks``) is open
to any origin and sets its own ``Access-Control-Allow-Origin: *``. The token, revocation and
introspection endpoints and the FHIR API answer cross-origin requests only from the origins of
registered, unrevoked SMART apps' redirect URIs, named exactly (never ``*``, never credentials:
bearer tokens travel in the Authorization header, not in cookies). Preflights for those paths
are answered here, before authentication, as the Fetch standard requires. Anything else gets no
CORS header, so the browser refuses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.concurrency import run_in_threadpool

__all__ = ["CorsMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_OAUTH = ("/oauth/token", "/oauth/revoke", "/oauth/introspect")
_OPEN = ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration")
_ALLOW_HEADERS = b"authorization, content-type, accept, if-match, prefer"
_ALLOW_METHODS = b"GET, POST, PUT, PATCH, DELETE"
_EXPOSE = b"etag, location, last-modified, content-location, x-request-id"


def _governed(path: str) -> bool:
    if path in _OPEN or path == "/fhir/metadata":
        return False
    return path in _OAUTH or path == "/fhir" or path.startswith("/fhir/")


class CorsMiddleware:
    def __init__(self, app: ASGIApp, origins: Callable[[], frozenset[str]]) -> None:
        self.app = app
        self._origins = origins  # the registered apps' origins (a cached, blocking lookup)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _governed(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        origin = next((v for k, v in scope.get("headers", ()) if k == b"origin"), None)
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = origin.decode("latin-1") in await run_in_threadpool(self._origins)
        if scope.get("method") == "OPTIONS":
            await self._preflight(send, origin if allowed else None)
            return
        if not allowed:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"access-control-allow-origin", origin),
                    (b"access-control-expose-headers", _EXPOSE),
                    (b"vary", b"Origin"),
                ]
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, send: Send, origin: bytes | None) -> None:
        headers: list[tuple[bytes, bytes]] = [(b"vary", b"Origin"), (b"content-length", b"0")]
        if origin is not None:
            headers += [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-methods", _ALLOW_METHODS),
                (b"access-control-allow-headers", _ALLOW_HEADERS),
                (b"access-control-max-age", b"600"),
            ]
        await send(
            {"type": "http.response.start", "status": 204 if origin else 403, "headers": headers}
        )
        await send({"type": "http.response.body", "body": b""})
