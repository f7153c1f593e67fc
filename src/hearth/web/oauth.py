"""OAuth 2 / SMART endpoints: token, revocation, introspection, JWKS and SMART discovery.

Thin adapters: parse the form, authenticate the client, call one service, render JSON. Errors
are RFC 6749 sec. 5.2 bodies (``{"error", "error_description"}``), not OperationOutcomes. Token
responses are never cached (``Cache-Control: no-store``, ``Pragma: no-cache``; SMART-TK-01,
set for every response by the security headers).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hearth.domain import HearthError, errors
from hearth.services.oauth import (
    ClientCredentials,
    Endpoints,
    PresentedCertificate,
    bound_thumbprint,
    oauth_error_body,
    smart_configuration,
)
from hearth.settings import Limits
from hearth.web.requests import client_address, peer_certificate, read_body
from hearth.wiring import ADMIN_ROLE, Container

__all__ = ["OAuthApi", "endpoints_for", "oauth_routes"]

T = TypeVar("T")

_FORM = "application/x-www-form-urlencoded"
_MAX_FORM_BYTES = 64 * 1024


def endpoints_for(container: Container, request: Request) -> Endpoints:
    """The OAuth endpoints as this request reached the server (or as configured)."""
    configured = container.settings.public_base_url
    base = configured.rstrip("/") if configured else str(request.base_url).rstrip("/") + "/fhir"
    return Endpoints(base)


def json_response(
    body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def oauth_error_response(error: HearthError) -> Response:
    return json_response(oauth_error_body(error), status=error.status, headers=error.headers)


async def read_form(request: Request, limits: Limits) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body; a repeated parameter is refused
    (RFC 6749 sec. 3.1, 3.2)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != _FORM:
        raise HearthError(errors.OAUTH_INVALID_REQUEST, f"Send {_FORM}.")
    raw = await read_body(request, limits)
    if len(raw) > _MAX_FORM_BYTES:
        raise HearthError(errors.PAYLOAD_TOO_LARGE)
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise HearthError(errors.OAUTH_INVALID_REQUEST, "The form is malformed.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise HearthError(errors.OAUTH_INVALID_REQUEST, "A parameter is repeated.")
        form[name] = value
    return form


class OAuthApi:
    def __init__(self, container: Container) -> None:
        self.c = container

    async def _run(self, work: Callable[[], T]) -> T:
        return await run_in_threadpool(work)

    async def _form(self, request: Request) -> dict[str, str]:
        return await read_form(request, self.c.settings.limits)

    def _certificate(self, request: Request) -> PresentedCertificate | None:
        """The connection's client certificate, checked (in the worker thread: it reads)."""
        der = peer_certificate(request)
        if der is None:
            return None
        return self.c.certificates.check(der, source=client_address(request))

    def _credentials(
        self, request: Request, form: dict[str, str], cert: PresentedCertificate | None
    ) -> ClientCredentials:
        return ClientCredentials.from_form(
            form, authorization=request.headers.get("authorization"), certificate=cert
        )

    # -- token endpoint (RFC 6749 sec. 3.2) -----------------------------------------------------
    async def token(self, request: Request) -> Response:
        try:
            form = await self._form(request)
            endpoints = endpoints_for(self.c, request)
            source = client_address(request)
            grant_type = form.get("grant_type")

            def work() -> dict[str, Any]:
                if grant_type not in ("client_credentials", "authorization_code", "refresh_token"):
                    raise HearthError(errors.UNSUPPORTED_GRANT_TYPE)
                cert = self._certificate(request)
                creds = self._credentials(request, form, cert)
                client = self.c.client_auth.authenticate(
                    creds, token_url=endpoints.token, source=source
                )
                bound = bound_thumbprint(client, cert)
                tokens = self.c.tokens
                if grant_type == "client_credentials":
                    if client.public:
                        raise HearthError(errors.UNAUTHORIZED_CLIENT)
                    return tokens.client_credentials(
                        client,
                        form.get("scope"),
                        endpoints=endpoints,
                        certificate=bound,
                        source=source,
                    )
                if grant_type == "authorization_code":
                    return tokens.exchange_code(
                        client, form, endpoints=endpoints, certificate=bound, source=source
                    )
                return tokens.refresh(
                    client, form, endpoints=endpoints, certificate=bound, source=source
                )

            return json_response(await self._run(work))
        except HearthError as error:
            return oauth_error_response(error)

    # -- revocation (RFC 7009) ----------------------------------------------------------------
    async def revoke(self, request: Request) -> Response:
        try:
            form = await self._form(request)
            endpoints = endpoints_for(self.c, request)
            source = client_address(request)
            token = form.get("token")
            if not token:
                raise HearthError(errors.OAUTH_INVALID_REQUEST, "token is required.")

            def work() -> None:
                creds = self._credentials(request, form, self._certificate(request))
                client = self.c.client_auth.authenticate(
                    creds, token_url=endpoints.token, source=source
                )
                self.c.tokens.revoke(client, token, source=source)

            await self._run(work)
            return Response(status_code=200)
        except HearthError as error:
            return oauth_error_response(error)

    # -- introspection (RFC 7662; SMART-IN-01..03) ------------------------------------------------
    async def introspect(self, request: Request) -> Response:
        try:
            form = await self._form(request)
            endpoints = endpoints_for(self.c, request)
            source = client_address(request)
            token = form.get("token")
            if not token:
                raise HearthError(errors.OAUTH_INVALID_REQUEST, "token is required.")
            header = request.headers.get("authorization", "")
            scheme, _, bearer = header.partition(" ")

            def work() -> dict[str, Any]:
                caller: str | None
                cert = self._certificate(request)
                creds = self._credentials(request, form, cert)
                if scheme.lower() == "bearer":
                    principal = self.c.authenticator.authenticate_bearer(
                        bearer.strip(),
                        source=source,
                        endpoints=endpoints,
                        certificate=cert.thumbprint if cert is not None else None,
                    )
                    # An administrator (acting on their own rights, not through an app) may
                    # introspect any token; a client its own only.
                    own_rights = principal.scopes is None
                    is_admin = own_rights and ADMIN_ROLE in principal.roles
                    caller = None if is_admin else principal.client_id or "-"
                else:
                    client = self.c.client_auth.authenticate(
                        creds, token_url=endpoints.token, source=source
                    )
                    if client.public:
                        raise HearthError(errors.INVALID_CLIENT)
                    caller = client.client_id
                return self.c.tokens.introspect(token, endpoints=endpoints, caller_client=caller)

            return json_response(await self._run(work))
        except HearthError as error:
            return oauth_error_response(error)

    # -- keys and discovery -------------------------------------------------------------------
    async def jwks(self, request: Request) -> Response:
        """The token signing keys' public halves (RFC 7517 sec. 5); rotated-out keys stay
        listed until every token they signed has expired."""
        keys = await self._run(self.c.token_keys)
        return json_response(
            keys.public_jwks(),
            headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
        )

    async def smart_configuration(self, request: Request) -> Response:
        """SMART discovery (SMART-WK-01): JSON whatever the Accept header, open to any origin."""
        body = smart_configuration(endpoints_for(self.c, request))
        return json_response(
            body, headers={"Cache-Control": "no-cache", "Access-Control-Allow-Origin": "*"}
        )


def oauth_routes(container: Container) -> list[Route]:
    api = OAuthApi(container)
    return [
        Route("/oauth/token", api.token, methods=["POST"]),
        Route("/oauth/revoke", api.revoke, methods=["POST"]),
        Route("/oauth/introspect", api.introspect, methods=["POST"]),
        Route("/oauth/jwks", api.jwks, methods=["GET"]),
        Route("/.well-known/smart-configuration", api.smart_configuration, methods=["GET"]),
        Route("/fhir/.well-known/smart-configuration", api.smart_configuration, methods=["GET"]),
    ]
