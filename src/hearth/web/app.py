"""The ASGI application: FHIR REST under ``/fhir``, with errors rendered as OperationOutcome."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from hearth.domain import HearthError, errors
from hearth.web.access import access_routes
from hearth.web.alarms import alarm_routes
from hearth.web.audit_views import audit_view_routes
from hearth.web.auth import AuthRedirect, auth_routes
from hearth.web.auth.pages import e, page
from hearth.web.authorize import authorize_routes
from hearth.web.certificate_signin import certificate_signin_routes
from hearth.web.cors import CorsMiddleware
from hearth.web.fhir import fhir_routes
from hearth.web.middleware import EdgeMiddleware, log_incident
from hearth.web.oauth import oauth_routes
from hearth.web.responses import error_response
from hearth.wiring import Container

__all__ = ["create_app"]

log = logging.getLogger("hearth.web")

_LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "[::1]"]


async def _hearth_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HearthError):  # pragma: no cover - Starlette dispatches by type
        return await _unexpected(request, exc)
    if not request.url.path.startswith(("/fhir", "/api/")):
        # The sign-in pages are for people: answer in HTML, with a way back.
        body = f'<p>{e(exc.detail)}</p><p><a href="/login">Go to sign-in</a></p>'
        return page("Something went wrong", body, status=exc.status, headers=exc.headers)
    return error_response(exc, pretty=request.query_params.get("_pretty") == "true")


async def _auth_redirect(request: Request, exc: Exception) -> Response:
    """Send a browser to sign in, unlock or step up (``hearth.web.auth.require_user``)."""
    if not isinstance(exc, AuthRedirect):  # pragma: no cover - Starlette dispatches by type
        return await _unexpected(request, exc)
    if exc.bounce:
        # A navigation from another site carries no SameSite=Strict cookie: ask the browser to
        # load the same URL again from this site, which does.
        link = f'<p><a href="{e(exc.location)}">Continue</a></p>'
        return page("Continuing", link, refresh_to=exc.location)
    return Response(
        status_code=303, headers={"location": exc.location, "cache-control": "no-store"}
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 400
    code = {404: errors.ROUTE_NOT_FOUND, 405: errors.METHOD_NOT_ALLOWED}.get(
        status, errors.BAD_REQUEST
    )
    return error_response(HearthError(code))


async def _unexpected(request: Request, exc: Exception) -> Response:
    incident = log_incident(exc)
    return error_response(HearthError(errors.INTERNAL, f"Internal error (incident {incident})."))


def _public_authority(public_base_url: str | None) -> tuple[str, int] | None:
    """``public_base_url``'s host and port (its scheme's default when it names none)."""
    if not public_base_url:
        return None
    parts = urlsplit(public_base_url)
    if not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname.lower()
    try:
        port = parts.port
    except ValueError:
        raise HearthError(errors.BAD_PARAMETER, "server.public_base_url has a bad port.") from None
    return host, port or (443 if parts.scheme == "https" else 80)


def create_app(container: Container, *, allowed_hosts: list[str] | None = None) -> Starlette:
    """The application. ``allowed_hosts`` are the names clients may use besides the loopback
    ones; a request is answered only when its Host names one of them with the port the
    connection arrived on, or names ``public_base_url``'s host and port."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The integrity scanner runs beside requests for as long as the app serves; it stops
        # at its next batch boundary before the container closes the database.
        scanner = container.start_scanner()
        app.state.scanner = scanner
        # The backup watch (policy, RPO, scheduled verification) likewise, when targets exist.
        monitor = container.start_backup_monitor()
        app.state.backup_monitor = monitor
        try:
            yield
        finally:
            if scanner is not None:
                await asyncio.to_thread(scanner.stop)
            if monitor is not None:
                await asyncio.to_thread(monitor.close)
            container.close()

    hosts = list(allowed_hosts or []) + _LOOPBACK_HOSTS
    public = _public_authority(container.settings.public_base_url)
    app = Starlette(
        routes=oauth_routes(container)
        + authorize_routes(container)
        + certificate_signin_routes(container)
        + audit_view_routes(container)
        + fhir_routes(container)
        + alarm_routes(container)
        + access_routes(container)
        + auth_routes(),
        middleware=[
            Middleware(EdgeMiddleware, allowed_hosts=hosts, public=public),
            Middleware(CorsMiddleware, origins=container.clients.registered_origins),
        ],
        exception_handlers={
            AuthRedirect: _auth_redirect,
            HearthError: _hearth_error,
            HTTPException: _http_error,
            # No handler for Exception: Starlette would log it and re-raise it to the server,
            # which prints the message. EdgeMiddleware answers it instead (and logs no message).
        },
        lifespan=lifespan,
    )
    app.state.container = container
    return app
