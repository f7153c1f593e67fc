"""``/login/certificate``: sign in with a smart card or another client certificate (mutual TLS).

``GET`` shows what the connection presented and a button; ``POST`` (CSRF-checked) checks the
certificate and its mapping to a user (``hearth.services.certificate_signin``) and continues
with the second-factor page, exactly as after a password.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hearth.domain import HearthError
from hearth.web.auth import check_csrf, csrf_token, load_session
from hearth.web.auth.guard import pre_session_cookie, set_session_cookie
from hearth.web.auth.pages import e, form, page
from hearth.web.oauth import read_form
from hearth.web.requests import client_address, peer_certificate
from hearth.wiring import Container

__all__ = ["certificate_signin_routes"]


class CertificateSignInApi:
    def __init__(self, container: Container) -> None:
        self.c = container

    async def page(self, request: Request, *, error: HearthError | None = None) -> Response:
        next_url = request.query_params.get("next", "/")
        csrf = await csrf_token(request)
        if peer_certificate(request) is None:
            body = (
                "<p>Your browser presented no client certificate. Insert your smart card, or "
                "choose your certificate when the browser asks, and reload this page.</p>"
                f'<p><a href="/login?next={e(next_url)}">Sign in with a password instead</a></p>'
            )
        else:
            body = form(
                "/login/certificate",
                csrf,
                "<p>Your browser presented a client certificate. Continue to sign in as the "
                "person it is registered to; your second factor follows.</p>"
                '<p><button type="submit">Continue with my certificate</button></p>',
                hidden={"next": next_url},
            )
        response = page(
            "Sign in with a smart card",
            body,
            status=error.status if error is not None else 200,
            error=error.detail if error is not None else None,
        )
        cookie = pre_session_cookie(request)
        if cookie is not None:
            response.headers.append("set-cookie", cookie)
        return response

    async def get(self, request: Request) -> Response:
        return await self.page(request)

    async def post(self, request: Request) -> Response:
        values = await read_form(request, self.c.settings.limits)
        await check_csrf(request, values.get("csrf"))
        session = await load_session(request)
        try:
            result = await run_in_threadpool(
                lambda: self.c.certificate_signin.start(
                    session,
                    peer_certificate(request),
                    source=client_address(request),
                    next_url=values.get("next"),
                )
            )
        except HearthError as error:
            return await self.page(request, error=error)
        response = Response(
            status_code=303,
            headers={"location": "/login/second-factor", "cache-control": "no-store"},
        )
        set_session_cookie(response, result.signed.session_id)
        return response


def certificate_signin_routes(container: Container) -> list[Route]:
    api = CertificateSignInApi(container)
    return [
        Route("/login/certificate", api.get, methods=["GET"]),
        Route("/login/certificate", api.post, methods=["POST"]),
    ]
