"""The edge of the application, as one pure ASGI middleware (Starlette's ``BaseHTTPMiddleware``
costs a task per request; this wraps ``send`` instead):

- refuses a request with no Host or more than one (RFC 9112 sec. 3.2), and a Host the server
  is not known by (DNS rebinding; no forged Host in the links, the OAuth issuer and the token
  audience we build from it), with an OperationOutcome: the name must be one of the allowed
  names and the port the one the connection arrived on (or the name and port of
  ``public_base_url``, or its name with no port, as a TLS-terminating proxy forwards it); the
  Host that passes is put in one spelling (lower case, no default port) before the
  application sees it;
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


_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_authority(value: str) -> tuple[str, int | None] | None:
    """A Host header's name (lower case; an IPv6 address in brackets) and port (None when it
    names none); None when it is malformed. A port is 1 to 65535 in ASCII digits with no
    leading zero, so that one port has one spelling (RFC 9110 sec. 7.2, RFC 3986 sec. 3.2)."""
    value = value.lower()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[: end + 1], value[end + 1 :]
    elif value.count(":") <= 1:
        host, colon, port = value.partition(":")
        rest = colon + port
    else:
        return None  # an IPv6 address without brackets
    if not host:
        return None
    if not rest:
        return host, None
    digits = rest[1:]
    if (
        rest[0] != ":"
        or not (digits.isascii() and digits.isdigit())
        or digits.startswith("0")
        or int(digits) > 65535
    ):
        return None
    return host, int(digits)


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        allowed_hosts: Iterable[str],
        public: tuple[str, int] | None = None,
    ) -> None:
        self.app = app
        self.allowed = frozenset(h.lower() for h in allowed_hosts)
        #: ``public_base_url``'s name and port: clients may reach the server through a port
        #: forwarded to the one it listens on (a load balancer's 443 to 8443).
        self.public = public

    def _checked_host(self, scope: Scope) -> bytes | None:
        """The request's Host in its one spelling when the server is known by it; else None.

        The port must be the one this connection arrived on (``scope["server"]``), or the
        public URL's: checking the name alone let ``Host: 127.0.0.1:1`` through, and the
        OAuth issuer, token audience and links were then built with port 1. The public URL's
        name without a port is that URL's origin whatever the connection's scheme (a proxy
        terminating TLS in front of a plain-HTTP listener); with a port, the port must match.
        """
        hosts = _host_fields(scope)
        if len(hosts) != 1:
            return None  # none, or more than one (RFC 9112 sec. 3.2: answered 400)
        authority = parse_authority(hosts[0].decode("latin-1"))
        if authority is None:
            return None
        host, port = authority
        if port is None and self.public is not None and host == self.public[0]:
            # public_base_url's name with no port names that URL's origin: a proxy that
            # terminates TLS forwards plain HTTP to the port Hearth listens on and keeps the
            # Host the client sent ("ehr.example.org"), which this connection's scheme would
            # otherwise read as port 80.
            return host.encode("ascii")
        default = _DEFAULT_PORTS.get(str(scope.get("scheme", "http")), 80)
        effective = default if port is None else port
        server = scope.get("server")
        arrived = server is not None and host in self.allowed and int(server[1]) == effective
        if not arrived and (host, effective) != self.public:
            return None
        spelled = host if effective == default else f"{host}:{effective}"
        return spelled.encode("ascii")

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
            host = self._checked_host(scope)
            if host is not None:
                _respell_host(scope, host)
                await self.app(scope, receive, send_with_headers)
            else:
                await _send_outcome(send_with_headers, _host_refusal(scope))
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


def _host_fields(scope: Scope) -> list[bytes]:
    """The values of the request's Host header fields (the server keeps each one)."""
    return [value for name, value in scope.get("headers", ()) if name == b"host"]


def _host_refusal(scope: Scope) -> HearthError:
    """Why the Host check refused: one code (``HRT-0109``), and no echo of the value."""
    if len(_host_fields(scope)) > 1:
        # RFC 9112 sec. 3.2: a request with more than one Host field is answered 400. Only the
        # first was checked, and a proxy or the application may read another one.
        return HearthError(errors.BAD_REQUEST, "A request carries one Host header field.")
    return HearthError(errors.BAD_REQUEST, "This server is not known by that name.")


def _respell_host(scope: Scope, host: bytes) -> None:
    """Put the checked Host in its one spelling, which links and the OAuth issuer are built
    from (``Request.base_url``); the header list is copied only when it changes."""
    headers = scope["headers"]
    for index, (name, value) in enumerate(headers):
        if name == b"host":
            if value != host:
                copied = list(headers)
                copied[index] = (b"host", host)
                scope["headers"] = copied
            return


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
