"""The OAuth authorization endpoint with its consent page, and the EHR launch (SMART App Launch
2.2; RFC 6749 sec. 4.1), built on the console's sign-in session (``hearth.web.auth``).

- ``GET|POST /oauth/authorize`` (SMART-PK-05): check the client and its exact redirect URI
  (errors before that are shown here, never redirected), then the signed-in user (or off to
  ``/login?next=``), then the rest of the request (errors go back to the app with ``state``),
  and show the consent page: the app, what it would be granted in plain words, a patient picker
  for a standalone ``launch/patient``, Approve and Deny.
- ``POST /oauth/authorize/decision``: CSRF-checked; re-checks the whole request (the page
  carries it in hidden fields, so nothing rides on server state between the two), then answers
  the app with a code or ``access_denied``.
- ``GET|POST /oauth/launch``: a signed-in user opens an app for a patient: a single-use launch
  context is made and the browser sent to the app's launch URL with ``iss`` and ``launch``.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hearth.domain import HearthError, Principal, errors
from hearth.services.oauth import Endpoints, PendingAuthorization
from hearth.web.auth import AuthRedirect, check_csrf, require_user
from hearth.web.auth.pages import PAGE_CSP, e, form, page
from hearth.web.oauth import endpoints_for, read_form
from hearth.wiring import Container

__all__ = ["authorize_routes"]

#: The authorization request's parameters, carried from the consent page to the decision.
_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
    "launch",
    "nonce",
    "hearth_break_glass",
)


def _see_other(location: str) -> Response:
    return Response(status_code=303, headers={"location": location, "cache-control": "no-store"})


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"


class AuthorizeApi:
    def __init__(self, container: Container) -> None:
        self.c = container

    async def _params(self, request: Request) -> dict[str, str]:
        if request.method == "POST":  # SMART-PK-05: authorize-post
            return await read_form(request, self.c.settings.limits)
        params: dict[str, str] = {}
        for name, value in request.query_params.multi_items():
            if name in params:
                raise HearthError(errors.OAUTH_INVALID_REQUEST, "A parameter is repeated.")
            params[name] = value
        return params

    async def authorize(self, request: Request) -> Response:
        params = await self._params(request)
        params = {k: v for k, v in params.items() if k in _PARAMS}
        endpoints = endpoints_for(self.c, request)
        service = self.c.authorization
        # Unknown client or redirect URI: shown to the user (the error page), never redirected.
        client, redirect = await run_in_threadpool(service.redirect_target, params)
        try:
            signed_in = await require_user(request)
        except AuthRedirect as elsewhere:
            if request.method != "POST" or elsewhere.bounce:
                raise
            # After sign-in, come back to the same request: a POST's form becomes a query.
            here = "/oauth/authorize?" + urlencode(params)
            raise AuthRedirect("/login?next=" + quote(here, safe="/")) from None
        user = signed_in.principal
        try:
            pending = await run_in_threadpool(
                service.check, client, redirect, params, user=user, endpoints=endpoints
            )
        except HearthError as error:
            return _see_other(service.error_redirect(redirect, error, params, endpoints))
        return self._consent(pending, params, signed_in.session.csrf)

    def _consent(
        self,
        pending: PendingAuthorization,
        params: dict[str, str],
        csrf: str,
        *,
        error: str | None = None,
    ) -> Response:
        lines = "".join(f"<li>{e(line)}</li>" for line in pending.describe())
        picker = ""
        if pending.needs_patient:
            picker = (
                '<p class="field"><label for="patient">Patient id</label>'
                '<input id="patient" name="patient" type="text" autocomplete="off" required '
                'aria-describedby="patient-hint" spellcheck="false"></p>'
                '<p class="hint" id="patient-hint">The app will see this patient only. You can '
                "choose only a patient you may open yourself.</p>"
            )
        elif pending.patient is not None:
            picker = f"<p>Patient: <code>{e(pending.patient)}</code></p>"
        buttons = (
            '<p><button type="submit" name="decision" value="approve">Allow</button> '
            '<button type="submit" name="decision" value="deny">Deny</button></p>'
        )
        body = (
            f"<p><strong>{e(pending.client.name)}</strong> asks to use your Hearth account. "
            "If you allow it, it may:</p>"
            f"<ul>{lines}</ul>"
            "<p>It never gets more than you may do yourself, and you can take the access back "
            "at any time.</p>"
            + form("/oauth/authorize/decision", csrf, picker + buttons, hidden=params)
        )
        # The decision redirects to the app: the form may go there (CSP form-action covers
        # redirects after a form post).
        csp = PAGE_CSP.replace(
            "form-action 'self'", f"form-action 'self' {_origin(pending.request.redirect_uri)}"
        )
        return page(
            "Allow access?",
            body,
            error=error,
            headers={"content-security-policy": csp},
        )

    async def decision(self, request: Request) -> Response:
        values = await read_form(request, self.c.settings.limits)
        await check_csrf(request, values.get("csrf"))
        params = {k: v for k, v in values.items() if k in _PARAMS}
        endpoints = endpoints_for(self.c, request)
        service = self.c.authorization
        client, redirect = await run_in_threadpool(service.redirect_target, params)
        signed_in = await require_user(request)
        user = signed_in.principal
        try:
            pending = await run_in_threadpool(
                service.check, client, redirect, params, user=user, endpoints=endpoints
            )
        except HearthError as error:
            return _see_other(service.error_redirect(redirect, error, params, endpoints))
        if values.get("decision") != "approve":
            location = await run_in_threadpool(
                lambda: service.deny(pending, user=user, endpoints=endpoints)
            )
            return _see_other(location)
        try:
            location = await run_in_threadpool(
                self._approve, pending, user, values.get("patient"), endpoints
            )
        except HearthError as error:
            if error.code is not errors.BAD_PARAMETER:
                return _see_other(service.error_redirect(redirect, error, params, endpoints))
            return self._consent(pending, params, signed_in.session.csrf, error=error.detail)
        return _see_other(location)

    def _approve(
        self,
        pending: PendingAuthorization,
        user: Principal,
        patient: str | None,
        endpoints: Endpoints,
    ) -> str:
        return self.c.authorization.approve(
            pending, user=user, picked_patient=patient, endpoints=endpoints
        )

    # -- EHR launch -----------------------------------------------------------------------------
    async def launch_page(self, request: Request) -> Response:
        signed_in = await require_user(request)
        client_id = request.query_params.get("client_id", "")
        patient = request.query_params.get("patient", "")
        client = await run_in_threadpool(self.c.clients.get, client_id)
        if client is None or client.revoked or not client.launch_uri:
            raise HearthError(errors.UNKNOWN_CLIENT, "No SMART app with a launch URL by that id.")
        body = (
            f"<p>Open <strong>{e(client.name)}</strong> for patient <code>{e(patient)}</code>? "
            "It will then ask for your permission.</p>"
            + form(
                "/oauth/launch",
                signed_in.session.csrf,
                '<p><button type="submit">Open the app</button></p>',
                hidden={"client_id": client_id, "patient": patient},
            )
        )
        csp = PAGE_CSP.replace(
            "form-action 'self'", f"form-action 'self' {_origin(client.launch_uri)}"
        )
        return page("Open app", body, headers={"content-security-policy": csp})

    async def launch(self, request: Request) -> Response:
        values = await read_form(request, self.c.settings.limits)
        await check_csrf(request, values.get("csrf"))
        signed_in = await require_user(request)
        endpoints = endpoints_for(self.c, request)
        location = await run_in_threadpool(
            lambda: self.c.authorization.start_launch(
                values.get("client_id", ""),
                values.get("patient", ""),
                user=signed_in.principal,
                endpoints=endpoints,
            )
        )
        return _see_other(location)


def authorize_routes(container: Container) -> list[Route]:
    api = AuthorizeApi(container)
    return [
        Route("/oauth/authorize", api.authorize, methods=["GET", "POST"]),
        Route("/oauth/authorize/decision", api.decision, methods=["POST"]),
        Route("/oauth/launch", api.launch_page, methods=["GET"]),
        Route("/oauth/launch", api.launch, methods=["POST"]),
    ]
