"""Routes of the sign-in pages (issue 4 item 10). Each handler parses, calls one service, renders.

Forms post ``application/x-www-form-urlencoded`` with a ``csrf`` field; the WebAuthn steps post
JSON with an ``X-CSRF-Token`` header from ``/static/hearth.js``. Blocking work (argon2id, the
database) runs in a worker thread. Paths:

``/login`` (name and password; a passkey button), ``/login/second-factor`` (TOTP, security key,
recovery code), ``/webauthn/options`` and ``/webauthn/verify`` (every WebAuthn assertion:
second factor, passkey, unlock, step-up), ``/unlock`` (locked session: PIN or key),
``/step-up``, ``/lock``, ``/logout``, ``/enrol?token=`` (one-time set-up), ``/account`` (keys,
PIN, recovery codes) and ``/`` (the signed-in landing page).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs, quote

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hearth.auth.sessions import SessionState
from hearth.domain import HearthError, errors
from hearth.services.sessions import Session, Signed
from hearth.services.signin import relying_party, safe_next
from hearth.web.auth import pages
from hearth.web.auth.guard import (
    AuthRedirect,
    check_csrf,
    clear_session_cookie,
    container_of,
    csrf_token,
    load_session,
    origin_of,
    pre_session_cookie,
    remember_session,
    require_user,
    set_session_cookie,
)
from hearth.web.auth.pages import Nav, e, field, form, key_button, page
from hearth.web.requests import client_address

__all__ = ["auth_routes"]

_MAX_FORM = 64 * 1024
Handler = Callable[[Request], Awaitable[Response]]


# -- plumbing ------------------------------------------------------------------------------
async def _body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > _MAX_FORM):
        raise HearthError(errors.PAYLOAD_TOO_LARGE)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > _MAX_FORM:
            raise HearthError(errors.PAYLOAD_TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form, first value of each field, after the CSRF check."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise HearthError(errors.UNSUPPORTED_MEDIA_TYPE)
    raw = (await _body(request)).decode("utf-8", "replace")
    parsed = parse_qs(raw, keep_blank_values=True, max_num_fields=32)
    values = {k: v[0] for k, v in parsed.items()}
    await check_csrf(request, values.get("csrf"))
    return values


async def read_json(request: Request) -> dict[str, Any]:
    """A JSON object body, after the CSRF check (``X-CSRF-Token``)."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise HearthError(errors.UNSUPPORTED_MEDIA_TYPE)
    await check_csrf(request, request.headers.get("x-csrf-token"))
    try:
        value = orjson.loads(await _body(request))
    except orjson.JSONDecodeError:
        raise HearthError(errors.MALFORMED_JSON) from None
    if not isinstance(value, dict):
        raise HearthError(errors.MALFORMED_JSON)
    return value


def redirect(location: str, *, signed: Signed | None = None, clear: bool = False) -> Response:
    response = Response(
        status_code=303, headers={"location": location, "cache-control": "no-store"}
    )
    if signed is not None:
        set_session_cookie(response, signed.session_id)
    elif clear:
        clear_session_cookie(response)
    return response


def json_response(
    body: dict[str, Any],
    *,
    status: int = 200,
    signed: Signed | None = None,
    clear: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    response = Response(
        orjson.dumps(body),
        status,
        {"cache-control": "no-store", **(headers or {})},
        media_type="application/json",
    )
    if signed is not None:
        set_session_cookie(response, signed.session_id)
    elif clear:
        clear_session_cookie(response)
    return response


def json_error(error: HearthError) -> Response:
    body: dict[str, Any] = {"error": error.detail, "code": error.code.code}
    if error.code is errors.STEP_UP_REQUIRED:
        body["redirect"] = "/step-up?next=/account"
    return json_response(body, status=error.status, headers=error.headers)


async def finish(request: Request, response: Response) -> Response:
    """Attach the pre-session cookie if rendering the page made one."""
    cookie = pre_session_cookie(request)
    if cookie is not None:
        response.headers.append("set-cookie", cookie)
    return response


def _rp(request: Request) -> Any:
    settings = container_of(request).settings
    return relying_party(settings.auth, settings.public_base_url, origin_of(request))


async def _nav(request: Request, session: Session) -> Nav:
    c = container_of(request)
    user = await run_in_threadpool(c.accounts.user, session.user_id or "")
    name = (user.display_name or user.username) if user is not None else "?"
    return Nav(name, session.csrf)


def _next(request: Request, form_values: dict[str, str] | None = None) -> str:
    raw = (form_values or {}).get("next") or request.query_params.get("next")
    return safe_next(raw)


# -- sign-in -------------------------------------------------------------------------------
async def login_page(
    request: Request, *, error: HearthError | None = None, username: str = ""
) -> Response:
    csrf = await csrf_token(request)
    next_url = _next(request)
    body = form(
        "/login",
        csrf,
        field(
            "username",
            "User name",
            autocomplete="username",
            autofocus=not username,
            extra=f' value="{e(username)}" autocapitalize="none" spellcheck="false"',
        )
        + field(
            "password",
            "Password",
            kind="password",
            autocomplete="current-password",
            autofocus=bool(username),
        )
        + '<p class="field"><label><input type="checkbox" data-show-password="password"> '
        "Show password</label></p>"
        '<p><button type="submit">Sign in</button></p>',
        hidden={"next": next_url},
    )
    body += '<h2 id="passkey-heading">Or use a passkey or security key</h2>' + key_button(
        "Sign in with a passkey or security key",
        action="get",
        options_url="/webauthn/options",
        verify_url="/webauthn/verify",
        csrf=csrf,
        extra={"next": next_url},
        button_id="passkey",
    )
    if container_of(request).settings.tls_client_ca is not None:
        # Mutual TLS is on: smart cards and other client certificates (web/certificate_signin).
        body += (
            "<h2>Or use a smart card</h2>"
            f'<p><a href="/login/certificate?next={e(quote(next_url, safe="/"))}">'
            "Sign in with a smart card or client certificate</a></p>"
        )
    status, headers = (error.status, error.headers) if error is not None else (200, None)
    return await finish(
        request,
        page(
            "Sign in", body, status=status, error=error.detail if error else None, headers=headers
        ),
    )


async def login_get(request: Request) -> Response:
    session = await load_session(request)
    if session is not None and session.state is SessionState.ACTIVE:
        return redirect(_next(request))
    return await login_page(request)


async def login_post(request: Request) -> Response:
    values = await read_form(request)
    c = container_of(request)
    session = await load_session(request)
    username = values.get("username", "")
    try:
        result = await run_in_threadpool(
            c.signin.password,
            session,
            username,
            values.get("password", ""),
            source=client_address(request),
            next_url=values.get("next"),
        )
    except HearthError as error:
        return await login_page(request, error=error, username=username[:64])
    if result.done:
        return redirect(result.redirect, signed=result.signed)
    return redirect("/login/second-factor", signed=result.signed)


async def second_factor_page(request: Request, *, error: HearthError | None = None) -> Response:
    c = container_of(request)
    session = await load_session(request)
    if (
        session is None
        or session.state is not SessionState.PENDING
        or (session.data.get("flow") != "sign-in")
    ):
        return redirect("/login")
    methods = await run_in_threadpool(c.signin.pending_methods, session)
    parts = []
    if "totp" in methods:
        parts.append(
            "<h2>Authenticator app</h2>"
            + form(
                "/login/totp",
                session.csrf,
                field(
                    "code",
                    "6-digit code from your authenticator app",
                    autocomplete="one-time-code",
                    autofocus=True,
                    extra=' inputmode="numeric" pattern="[0-9 ]*" maxlength="10"',
                )
                + '<p><button type="submit">Continue</button></p>',
            )
        )
    if "key" in methods:
        parts.append(
            "<h2>Security key</h2>"
            + key_button(
                "Use your security key",
                action="get",
                options_url="/webauthn/options",
                verify_url="/webauthn/verify",
                csrf=session.csrf,
                button_id="use-key",
            )
        )
    if "recovery" in methods:
        parts.append(
            "<details><summary>Use a recovery code</summary>"
            + form(
                "/login/recovery",
                session.csrf,
                field(
                    "recovery",
                    "Recovery code",
                    autocomplete="off",
                    extra=' autocapitalize="characters" spellcheck="false"',
                )
                + '<p><button type="submit">Use recovery code</button></p>',
            )
            + "</details>"
        )
    parts.append('<p><a href="/login">Start again</a></p>')
    status, headers = (error.status, error.headers) if error is not None else (200, None)
    return page(
        "Confirm it is you",
        "".join(parts),
        status=status,
        error=error.detail if error else None,
        headers=headers,
    )


async def second_factor_get(request: Request) -> Response:
    return await second_factor_page(request)


def _second_factor(kind: str) -> Handler:
    async def handler(request: Request) -> Response:
        values = await read_form(request)
        c = container_of(request)
        session = await load_session(request)
        method = c.signin.totp if kind == "totp" else c.signin.recovery
        value = values.get("code" if kind == "totp" else "recovery", "")
        try:
            result = await run_in_threadpool(method, session, value, source=client_address(request))
        except HearthError as error:
            if error.code is errors.SESSION_ENDED:
                return await login_page(request, error=error)
            return await second_factor_page(request, error=error)
        return redirect(result.redirect, signed=result.signed)

    return handler


# -- WebAuthn assertions (second factor, passkey, unlock, step-up) -------------------------------
async def webauthn_options(request: Request) -> Response:
    try:
        body = await read_json(request)
        c = container_of(request)
        session = await load_session(request)
        signed, options = await run_in_threadpool(
            c.signin.key_options,
            session,
            _rp(request),
            source=client_address(request),
            next_url=body.get("next"),
        )
    except HearthError as error:
        return json_error(error)
    csrf = signed.session.csrf if signed is not None else (session.csrf if session else "")
    return json_response({"options": orjson.loads(options), "csrf": csrf}, signed=signed)


async def webauthn_verify(request: Request) -> Response:
    try:
        body = await read_json(request)
        c = container_of(request)
        session = await load_session(request)
        credential = body.get("credential")
        if not isinstance(credential, dict):
            raise HearthError(errors.WEBAUTHN_FAILED)
        result = await run_in_threadpool(
            c.signin.key_verify,
            session,
            _rp(request),
            credential,
            source=client_address(request),
        )
    except HearthError as error:
        return json_error(error)
    return json_response({"redirect": result.redirect}, signed=result.signed)


# -- lock, unlock, step-up, sign-out -----------------------------------------------------------
async def unlock_page(request: Request, *, error: HearthError | None = None) -> Response:
    c = container_of(request)
    session = await load_session(request)
    if session is None or session.state is SessionState.PENDING:
        return redirect(f"/login?next={quote(_next(request), safe='/')}")
    if session.state is SessionState.ACTIVE:
        return redirect(_next(request))
    user = await run_in_threadpool(c.accounts.user, session.user_id or "")
    if user is None:
        return redirect("/login")
    methods = await run_in_threadpool(c.signin.methods, user)
    next_url = _next(request)
    parts = [
        f"<p>This session of <strong>{e(user.display_name or user.username)}</strong> is locked. "
        "Only the same person can unlock it; anyone else must sign out and sign in.</p>"
    ]
    if user.pin_hash is not None:
        parts.append(
            form(
                "/unlock/pin",
                session.csrf,
                field(
                    "pin",
                    "PIN",
                    kind="password",
                    autocomplete="off",
                    autofocus=True,
                    extra=' inputmode="numeric" maxlength="16"',
                )
                + '<p><button type="submit">Unlock</button></p>',
                hidden={"next": next_url},
            )
        )
    if "key" in methods:
        parts.append(
            key_button(
                "Unlock with your security key",
                action="get",
                options_url="/webauthn/options",
                verify_url="/webauthn/verify",
                csrf=session.csrf,
                extra={"next": next_url},
                button_id="unlock-key",
            )
        )
    if user.pin_hash is None and "key" not in methods:
        parts.append("<p>No PIN or security key is set up for unlocking: sign in again.</p>")
    parts.append(
        form(
            "/logout",
            session.csrf,
            '<p><button type="submit">Sign out, or sign in as someone else</button></p>',
        )
    )
    status, headers = (error.status, error.headers) if error is not None else (200, None)
    return page(
        "Session locked",
        "".join(parts),
        status=status,
        error=error.detail if error else None,
        headers=headers,
    )


async def unlock_get(request: Request) -> Response:
    return await unlock_page(request)


async def unlock_pin(request: Request) -> Response:
    values = await read_form(request)
    c = container_of(request)
    session = await load_session(request)
    try:
        signed = await run_in_threadpool(
            c.signin.unlock_pin, session, values.get("pin", ""), source=client_address(request)
        )
    except HearthError as error:
        if error.code in (errors.PIN_LOCKOUT, errors.SESSION_ENDED):
            remember_session(request, None)
            response = await login_page(request, error=error)
            clear_session_cookie(response)
            return response
        return await unlock_page(request, error=error)
    return redirect(_next(request, values), signed=signed)


async def lock(request: Request) -> Response:
    await read_form(request)
    c = container_of(request)
    session = await load_session(request)
    if session is not None and session.state is SessionState.ACTIVE:
        await run_in_threadpool(c.sessions.lock, session, reason="user")
    return redirect("/unlock")


async def logout(request: Request) -> Response:
    await read_form(request)
    c = container_of(request)
    session = await load_session(request)
    if session is not None:
        await run_in_threadpool(c.sessions.end, session, reason="sign-out")
    return redirect("/login", clear=True)


async def step_up_page(request: Request, *, error: HearthError | None = None) -> Response:
    c = container_of(request)
    signed_in = await require_user(request)
    methods = await run_in_threadpool(c.signin.step_up_methods, signed_in.session)
    next_url = _next(request)
    parts = ["<p>This action needs you to confirm it is you.</p>"]
    if "totp" in methods:
        parts.append(
            form(
                "/step-up/totp",
                signed_in.session.csrf,
                field(
                    "code",
                    "6-digit code from your authenticator app",
                    autocomplete="one-time-code",
                    autofocus=True,
                    extra=' inputmode="numeric" maxlength="10"',
                )
                + '<p><button type="submit">Confirm</button></p>',
                hidden={"next": next_url},
            )
        )
    if "key" in methods:
        parts.append(
            key_button(
                "Confirm with your security key",
                action="get",
                options_url="/webauthn/options",
                verify_url="/webauthn/verify",
                csrf=signed_in.session.csrf,
                extra={"next": next_url},
                button_id="step-up-key",
            )
        )
    nav = await _nav(request, signed_in.session)
    status, headers = (error.status, error.headers) if error is not None else (200, None)
    return page(
        "Confirm it is you",
        "".join(parts),
        nav=nav,
        status=status,
        error=error.detail if error else None,
        headers=headers,
    )


async def step_up_get(request: Request) -> Response:
    return await step_up_page(request)


async def step_up_totp(request: Request) -> Response:
    values = await read_form(request)
    c = container_of(request)
    session = await load_session(request)
    try:
        signed = await run_in_threadpool(
            c.signin.step_up_totp,
            session,
            values.get("code", ""),
            source=client_address(request),
        )
    except HearthError as error:
        return await step_up_page(request, error=error)
    return redirect(_next(request, values), signed=signed)


# -- set-up through a one-time link --------------------------------------------------------------
async def enrol_page(request: Request, *, error: HearthError | None = None) -> Response:
    c = container_of(request)
    token = request.query_params.get("token", "")
    try:
        enrolment = await run_in_threadpool(c.account.enrolment, token)
    except HearthError as invalid:
        return page("Set-up link not valid", f"<p>{e(invalid.detail)}</p>", status=invalid.status)
    csrf = await csrf_token(request)
    who = enrolment.display_name or enrolment.username
    body = (
        f"<p>Set up how <strong>{e(who)}</strong> (user name <code>{e(enrolment.username)}"
        "</code>) signs in to Hearth. This link works once.</p>"
        "<h2>A security key or this device's fingerprint or face</h2>"
        "<p>Recommended: nothing to remember, and it cannot be phished.</p>"
        + field("key-name", "Name for the key (optional)", autocomplete="off").replace(
            " required", ""
        )
        + key_button(
            "Register a security key",
            action="create",
            options_url="/enrol/key/options",
            verify_url="/enrol/key/verify",
            csrf=csrf,
            extra={"token": token, "platform": "false", "name-field": "key-name"},
            button_id="enrol-roaming",
        )
        + key_button(
            "Use this device (fingerprint, face or screen lock)",
            action="create",
            options_url="/enrol/key/options",
            verify_url="/enrol/key/verify",
            csrf=csrf,
            extra={"token": token, "platform": "true", "name-field": "key-name"},
            button_id="enrol-platform",
        )
        + "<h2>A password and an authenticator app</h2>"
        + form(
            "/enrol/password",
            csrf,
            field(
                "password",
                "New password",
                kind="password",
                autocomplete="new-password",
                hint="At least 8 characters; longer is stronger. A few unrelated words make a "
                "good one. Avoid your name, the service's name and common passwords.",
                extra=' minlength="8" maxlength="256"',
            )
            + field("confirm", "New password again", kind="password", autocomplete="new-password")
            + '<p class="field"><label><input type="checkbox" data-show-password="password">'
            " Show password</label></p>"
            '<p><button type="submit">Continue</button></p>',
            hidden={"token": token},
        )
    )
    status = error.status if error is not None else 200
    return await finish(
        request, page("Set up sign-in", body, status=status, error=error.detail if error else None)
    )


async def enrol_get(request: Request) -> Response:
    return await enrol_page(request)


async def enrol_password(request: Request) -> Response:
    values = await read_form(request)
    c = container_of(request)
    session = await load_session(request)
    token = values.get("token", "")
    request.scope["query_string"] = f"token={quote(token)}".encode("ascii")
    try:
        signed = await run_in_threadpool(
            c.account.enrol_password,
            session,
            token,
            values.get("password", ""),
            values.get("confirm", ""),
            source=client_address(request),
        )
    except HearthError as error:
        remember_session(request, session)
        return await enrol_page(request, error=error)
    return redirect("/enrol/app", signed=signed)


async def enrol_app_page(request: Request, *, error: HearthError | None = None) -> Response:
    c = container_of(request)
    session = await load_session(request)
    try:
        enrolment, app = await run_in_threadpool(c.account.enrol_totp_view, session)
    except HearthError as invalid:
        return page("Set-up expired", f"<p>{e(invalid.detail)}</p>", status=invalid.status)
    assert session is not None  # noqa: S101 - enrol_totp_view checked it
    body = (
        "<p>Scan this code with your authenticator app (such as Google Authenticator, Microsoft "
        "Authenticator, FreeOTP or 1Password), then enter the 6-digit code it shows.</p>"
        f'<div class="qr">{app.qr_svg}</div>'
        "<p>Cannot scan? Enter this key in the app instead:</p>"
        f'<p><code class="manual-key" id="manual-key">{e(app.manual_key)}</code></p>'
        + form(
            "/enrol/app",
            session.csrf,
            field(
                "code",
                "6-digit code from the app",
                autocomplete="one-time-code",
                autofocus=True,
                extra=' inputmode="numeric" maxlength="10"',
            )
            + '<p><button type="submit">Finish set-up</button></p>',
        )
    )
    status = error.status if error is not None else 200
    return page(
        f"Set up an authenticator app for {enrolment.username}",
        body,
        status=status,
        error=error.detail if error else None,
    )


async def enrol_app_get(request: Request) -> Response:
    return await enrol_app_page(request)


async def enrol_app_post(request: Request) -> Response:
    values = await read_form(request)
    c = container_of(request)
    session = await load_session(request)
    try:
        signed, codes = await run_in_threadpool(
            c.account.enrol_totp_finish,
            session,
            values.get("code", ""),
            source=client_address(request),
        )
    except HearthError as error:
        return await enrol_app_page(request, error=error)
    body = (
        "<p>You are set up and signed in. If you lose your phone, each of these recovery codes "
        "lets you sign in once. Store them somewhere safe now: they will not be shown again.</p>"
        + pages.codes_list(codes)
        + '<p><a href="/" id="continue">Continue</a></p>'
    )
    response = page("Save your recovery codes", body, nav=await _nav(request, signed.session))
    set_session_cookie(response, signed.session_id)
    return response


async def enrol_key_options(request: Request) -> Response:
    try:
        body = await read_json(request)
        c = container_of(request)
        session = await load_session(request)
        platform = {"true": True, "false": False}.get(str(body.get("platform")).lower())
        signed, options = await run_in_threadpool(
            c.account.enrol_key_options,
            session,
            str(body.get("token", "")),
            _rp(request),
            platform=platform,
            source=client_address(request),
        )
    except HearthError as error:
        return json_error(error)
    return json_response(
        {"options": orjson.loads(options), "csrf": signed.session.csrf}, signed=signed
    )


async def enrol_key_verify(request: Request) -> Response:
    try:
        body = await read_json(request)
        c = container_of(request)
        session = await load_session(request)
        signed = await run_in_threadpool(
            c.account.enrol_key_finish,
            session,
            _rp(request),
            body.get("credential") or {},
            name=body.get("name"),
            source=client_address(request),
        )
    except HearthError as error:
        return json_error(error)
    return json_response({"redirect": "/"}, signed=signed)


# -- signed in ------------------------------------------------------------------------------------
async def home(request: Request) -> Response:
    signed_in = await require_user(request)
    p = signed_in.principal
    name = p.attributes.get("display_name") or p.attributes.get("username", "")
    body = (
        f'<p id="welcome">Welcome, {e(name)}.</p>'
        f"<p>User name <code>{e(p.attributes.get('username', ''))}</code>; roles: "
        f"{e(', '.join(sorted(p.roles)) or 'none')}.</p>"
        '<p><a href="/account">Manage your sign-in methods</a></p>'
    )
    return page("Hearth", body, nav=await _nav(request, signed_in.session))


async def account_page(
    request: Request,
    *,
    error: HearthError | None = None,
    notice: str | None = None,
    extra: str = "",
) -> Response:
    c = container_of(request)
    signed_in = await require_user(request)
    view = await run_in_threadpool(c.account.view, signed_in.session)
    csrf = signed_in.session.csrf
    rows = []
    for key in view.keys:
        rename = form(
            "/account/keys/rename",
            csrf,
            f'<label for="name-{e(key.id)}">Name</label>'
            f'<input id="name-{e(key.id)}" name="name" value="{e(key.name)}" maxlength="64" '
            'required><button type="submit">Rename</button>',
            hidden={"key": key.id},
            cls="inline",
        )
        remove = form(
            "/account/keys/remove",
            csrf,
            f'<button type="submit" aria-label="Remove {e(key.name)}">Remove</button>',
            hidden={"key": key.id},
            cls="inline",
        )
        kind = "this device" if key.platform else "security key"
        rows.append(f"<li><span>{e(key.name)} ({kind})</span> {rename} {remove}</li>")
    keys_html = '<ul class="keys">' + "".join(rows) + "</ul>" if rows else "<p>None yet.</p>"
    body = (
        extra
        + "<h2>Security keys and passkeys</h2>"
        + keys_html
        + key_button(
            "Add a security key",
            action="create",
            options_url="/account/keys/options",
            verify_url="/account/keys/verify",
            csrf=csrf,
            extra={"platform": "false"},
            button_id="add-roaming",
        )
        + key_button(
            "Add this device (fingerprint, face or screen lock)",
            action="create",
            options_url="/account/keys/options",
            verify_url="/account/keys/verify",
            csrf=csrf,
            extra={"platform": "true"},
            button_id="add-platform",
        )
        + "<h2>PIN for unlocking</h2>"
        + f"<p>{'A PIN is set.' if view.has_pin else 'No PIN is set.'} A PIN of 6 or more "
        "digits unlocks your locked session on this browser; five wrong PINs sign you out.</p>"
        + form(
            "/account/pin",
            csrf,
            field(
                "pin",
                "New PIN",
                kind="password",
                autocomplete="off",
                extra=' inputmode="numeric" minlength="6" maxlength="16"',
            )
            + field(
                "pin-confirm",
                "New PIN again",
                kind="password",
                autocomplete="off",
                extra=' inputmode="numeric" minlength="6" maxlength="16"',
            )
            + '<p><button type="submit">Set PIN</button></p>',
        )
    )
    others = await run_in_threadpool(c.sessions.others, signed_in.session)
    body += (
        "<h2>Other sessions</h2>"
        f"<p>You are signed in on {len(others)} other "
        f"{'browser' if len(others) == 1 else 'browsers'}.</p>"
    )
    if others:
        body += form(
            "/account/sessions/end-others",
            csrf,
            '<p><button type="submit">Sign out everywhere else</button></p>',
        )
    if view.has_password:
        body += "<h2>Password</h2>" + form(
            "/account/password",
            csrf,
            field(
                "current-password",
                "Current password",
                kind="password",
                autocomplete="current-password",
            )
            + field(
                "new-password",
                "New password",
                kind="password",
                autocomplete="new-password",
                hint="At least 8 characters; a few unrelated words make a good one.",
                extra=' minlength="8" maxlength="256"',
            )
            + field(
                "new-password-again",
                "New password again",
                kind="password",
                autocomplete="new-password",
            )
            + '<p><button type="submit">Change password</button></p>',
        )
        body += (
            "<h2>Recovery codes</h2>"
            f"<p>{view.recovery_codes} unused recovery codes.</p>"
            + form(
                "/account/recovery-codes",
                csrf,
                '<p><button type="submit">Make new recovery codes</button></p>',
            )
        )
    status = error.status if error is not None else 200
    return page(
        "Your account",
        body,
        nav=await _nav(request, signed_in.session),
        status=status,
        error=error.detail if error else None,
        notice=notice,
    )


async def account_get(request: Request) -> Response:
    return await account_page(request)


def _account_action(action: str) -> Handler:
    async def handler(request: Request) -> Response:
        values = await read_form(request)
        c = container_of(request)
        session = await load_session(request)
        try:
            match action:
                case "rename":
                    await run_in_threadpool(
                        c.account.rename_key,
                        session,
                        values.get("key", ""),
                        values.get("name", ""),
                    )
                    return await account_page(request, notice="The key was renamed.")
                case "remove":
                    await run_in_threadpool(c.account.remove_key, session, values.get("key", ""))
                    return await account_page(request, notice="The key was removed.")
                case "password":
                    await run_in_threadpool(
                        c.account.change_password,
                        session,
                        values.get("current-password", ""),
                        values.get("new-password", ""),
                        values.get("new-password-again", ""),
                    )
                    return await account_page(
                        request,
                        notice="Your password is changed. If you changed it because someone else "
                        "may know it, sign out everywhere else below.",
                    )
                case "end-others":
                    signed_in = await require_user(request)
                    ended = await run_in_threadpool(c.sessions.end_others, signed_in.session)
                    return await account_page(request, notice=f"Signed out {ended} other sessions.")
                case "pin":
                    await run_in_threadpool(
                        c.account.set_pin,
                        session,
                        values.get("pin", ""),
                        values.get("pin-confirm", ""),
                    )
                    return await account_page(request, notice="Your PIN is set.")
                case _:
                    codes = await run_in_threadpool(c.account.new_recovery_codes, session)
                    extra = (
                        "<h2>Your new recovery codes</h2><p>Store them now; they will not be "
                        "shown again. The old ones no longer work.</p>" + pages.codes_list(codes)
                    )
                    return await account_page(request, extra=extra)
        except HearthError as error:
            if error.code is errors.STEP_UP_REQUIRED:
                raise AuthRedirect("/step-up?next=/account") from None
            if error.code in (errors.SIGN_IN_REQUIRED, errors.SESSION_ENDED):
                raise AuthRedirect("/login?next=/account") from None
            return await account_page(request, error=error)

    return handler


async def account_key_options(request: Request) -> Response:
    try:
        body = await read_json(request)
        c = container_of(request)
        session = await load_session(request)
        platform = {"true": True, "false": False}.get(str(body.get("platform")).lower())
        options = await run_in_threadpool(
            c.account.add_key_options, session, _rp(request), platform=platform
        )
    except HearthError as error:
        return json_error(error)
    return json_response(
        {"options": orjson.loads(options), "csrf": session.csrf if session else ""}
    )


async def account_key_verify(request: Request) -> Response:
    try:
        body = await read_json(request)
        c = container_of(request)
        session = await load_session(request)
        await run_in_threadpool(
            c.account.add_key_finish,
            session,
            _rp(request),
            body.get("credential") or {},
            name=body.get("name"),
        )
    except HearthError as error:
        return json_error(error)
    return json_response({"redirect": "/account"})


# -- static files ---------------------------------------------------------------------------------
def _static() -> dict[str, tuple[bytes, str, str]]:
    found = {}
    for name, media in (("hearth.js", "text/javascript"), ("hearth.css", "text/css")):
        content = (files("hearth.web") / "static" / name).read_bytes()
        etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
        found[name] = (content, media + "; charset=utf-8", etag)
    return found


def static_route() -> Route:
    assets = _static()

    async def serve(request: Request) -> Response:
        asset = assets.get(request.path_params["name"])
        if asset is None:
            raise HearthError(errors.ROUTE_NOT_FOUND)
        content, media, etag = asset
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"etag": etag})
        # Scripts and styles hold no PHI; letting the browser revalidate by ETag is enough.
        return Response(
            content, media_type=media, headers={"etag": etag, "cache-control": "no-cache"}
        )

    return Route("/static/{name}", serve, methods=["GET"])


def auth_routes() -> list[Route]:
    return [
        Route("/", home, methods=["GET"]),
        Route("/login", login_get, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/login/second-factor", second_factor_get, methods=["GET"]),
        Route("/login/totp", _second_factor("totp"), methods=["POST"]),
        Route("/login/recovery", _second_factor("recovery"), methods=["POST"]),
        Route("/webauthn/options", webauthn_options, methods=["POST"]),
        Route("/webauthn/verify", webauthn_verify, methods=["POST"]),
        Route("/unlock", unlock_get, methods=["GET"]),
        Route("/unlock/pin", unlock_pin, methods=["POST"]),
        Route("/lock", lock, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/step-up", step_up_get, methods=["GET"]),
        Route("/step-up/totp", step_up_totp, methods=["POST"]),
        Route("/enrol", enrol_get, methods=["GET"]),
        Route("/enrol/password", enrol_password, methods=["POST"]),
        Route("/enrol/app", enrol_app_get, methods=["GET"]),
        Route("/enrol/app", enrol_app_post, methods=["POST"]),
        Route("/enrol/key/options", enrol_key_options, methods=["POST"]),
        Route("/enrol/key/verify", enrol_key_verify, methods=["POST"]),
        Route("/account", account_get, methods=["GET"]),
        Route("/account/keys/options", account_key_options, methods=["POST"]),
        Route("/account/keys/verify", account_key_verify, methods=["POST"]),
        Route("/account/keys/rename", _account_action("rename"), methods=["POST"]),
        Route("/account/keys/remove", _account_action("remove"), methods=["POST"]),
        Route("/account/pin", _account_action("pin"), methods=["POST"]),
        Route("/account/password", _account_action("password"), methods=["POST"]),
        Route("/account/recovery-codes", _account_action("recovery"), methods=["POST"]),
        Route("/account/sessions/end-others", _account_action("end-others"), methods=["POST"]),
        static_route(),
    ]
