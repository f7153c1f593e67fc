"""The edge of the application, as one pure ASGI middleware (Starlette's ``BaseHTTPMiddleware``
costs a task per request; this wraps ``send`` instead):

- refuses Host names the server is not known by (DNS rebinding; no forged Host in the links we
  build), with an OperationOutcome;
- gives each request an id (``X-Request-Id``, and the audit entry's ``request``);
- adds the security headers of ``hearth.web.headers``;
- writes one access-log line per request: method, path with ids and every unknown segment
  masked, status, time. Never the query string: it may hold search values, which are PHI;
- turns any exception nobody handled into a 500 OperationOutcome with an incident id, and logs
  the incident id, the exception's type and where it was raised, never its message (a KeyError
  names its key; a database error quotes its parameters). The exception stops here: re-raising
  it would let the server print the message and traceback.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from hearth.domain import HearthError, errors
from hearth.fhir.outcome import operation_outcome
from hearth.web.headers import security_headers
from hearth.web.logpath import app_literals, loggable_path

__all__ = ["EdgeMiddleware", "log_incident"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("hearth.access")


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(h.lower() for h in allowed_hosts)

    def _host_allowed(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", ()):
            if name == b"host":
                host = value.decode("latin-1").lower()
                if host.startswith("["):
                    host = host[: host.find("]") + 1]
                else:
                    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
                return host in self.allowed
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                headers = security_headers(list(message.get("headers", [])))
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message["headers"] = headers
            await send(message)

        try:
            if self._host_allowed(scope):
                await self.app(scope, receive, send_with_headers)
            else:
                await _send_outcome(
                    send_with_headers,
                    HearthError(errors.BAD_REQUEST, "This server is not known by that name."),
                )
        except Exception as exc:  # noqa: BLE001 - the last line of defence; see the docstring
            incident = log_incident(exc)
            if not started:
                error = HearthError(errors.INTERNAL, f"Internal error (incident {incident}).")
                await _send_outcome(send_with_headers, error)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "%s %s %d %.1fms",
                    scope.get("method"),
                    _route_path(scope),
                    status,
                    (time.perf_counter() - start) * 1000,
                )


def log_incident(exc: BaseException) -> str:
    """Log an unexpected exception without its message; return the incident id to show."""
    incident = uuid.uuid4().hex[:12]
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"
    logging.getLogger("hearth.web").error(
        "incident %s: %s at %s", incident, type(exc).__name__, where
    )
    return incident


async def _send_outcome(send: Send, error: HearthError) -> None:
    body = orjson.dumps(operation_outcome(error))
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/fhir+json; charset=utf-8"),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _route_path(scope: Scope) -> str:
    """The path as the access log may print it: known FHIR shapes and route names, ids as
    ``:id``, anything else as ``:x`` (``hearth.web.logpath``)."""
    return loggable_path(str(scope.get("path", "")), app_literals(scope.get("app")))
