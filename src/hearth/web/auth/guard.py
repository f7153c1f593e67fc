"""The session as web handlers use it: who is signed in, and the checks before an action.

This is the small interface the console and the OAuth authorization endpoint build on:

- ``await current_user(request)`` -> ``Principal | None``: the user of this browser's active
  session (None when signed out, locked or mid-sign-in);
- ``await require_user(request, step_up=False)`` -> ``SignedIn``: the same, or a redirect to
  ``/login?next=<this URL>`` (``/unlock?next=`` when locked; ``/step-up?next=`` when ``step_up``
  is asked and no second factor was shown in the last ``[sessions] step_up_minutes``). Raise it
  from a GET handler; the app turns :class:`AuthRedirect` into a ``303``;
- ``await check_csrf(request, token)``: every state-changing request carries the session's CSRF
  token (a form field ``csrf`` or the ``X-CSRF-Token`` header), and its ``Origin``, when sent,
  must be this site (NIST-SE-04, ASVS v5.0.0-3.5.1);
- ``await csrf_token(request)``: the token to put in a form.

The cookie is ``__Host-hearth-session`` with ``Secure; HttpOnly; SameSite=Strict; Path=/`` and no
expiry attribute: the server, not the cookie, enforces the timeouts (NIST-SE-06). Browsers
accept ``Secure`` cookies on ``http://localhost`` and ``http://127.0.0.1`` (loopback counts as a
secure context), so development over plain HTTP on loopback works unchanged.

SameSite=Strict cookies are not sent on a navigation that starts on another site (a SMART app
sending the user to ``/authorize``). ``require_user`` then answers once with a page that
re-requests the same URL from this site (a meta refresh, no script), which carries the cookie.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hearth.auth.sessions import SessionState, csrf_matches
from hearth.domain import HearthError, Principal, errors
from hearth.services.sessions import Session
from hearth.web.requests import client_address
from hearth.wiring import Container

__all__ = [
    "PRE_SESSION_COOKIE",
    "SESSION_COOKIE",
    "AuthRedirect",
    "SignedIn",
    "check_csrf",
    "clear_session_cookie",
    "container_of",
    "csrf_token",
    "current_user",
    "load_session",
    "origin_of",
    "require_console_user",
    "require_user",
    "set_session_cookie",
]

SESSION_COOKIE = "__Host-hearth-session"
PRE_SESSION_COOKIE = "__Host-hearth-pre"
_COOKIE_FLAGS = "; Path=/; Secure; HttpOnly; SameSite=Strict"


class AuthRedirect(Exception):
    """Send the browser to ``location`` (a local path) with ``303 See Other``; with
    ``bounce`` set, first re-request the current URL from this site (see module docstring)."""

    def __init__(self, location: str, *, bounce: bool = False) -> None:
        super().__init__(location)
        self.location = location
        self.bounce = bounce


@dataclass(frozen=True, slots=True)
class SignedIn:
    principal: Principal
    session: Session


def container_of(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


def origin_of(request: Request) -> str:
    """This request's own origin: scheme and Host (already limited to this server's names by
    the trusted-host middleware)."""
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def _own_origins(request: Request) -> tuple[str, ...]:
    """The origins a state change may come from: this request's own, and ``public_base_url``'s
    (behind a TLS-terminating proxy the connection is plain HTTP while the browser is on the
    public HTTPS origin)."""
    public = container_of(request).settings.public_base_url
    if not public:
        return (origin_of(request),)
    parts = urlsplit(public)
    return (origin_of(request), f"{parts.scheme}://{parts.netloc}".lower())


def set_session_cookie(response: Response, session_id: str) -> None:
    response.headers.append("set-cookie", f"{SESSION_COOKIE}={session_id}{_COOKIE_FLAGS}")


def clear_session_cookie(response: Response) -> None:
    response.headers.append("set-cookie", f"{SESSION_COOKIE}=; Max-Age=0{_COOKIE_FLAGS}")


def _this_url(request: Request) -> str:
    path = request.url.path
    return path + ("?" + request.url.query if request.url.query else "")


async def load_session(request: Request) -> Session | None:
    """This browser's session after the timeouts (cached for the request)."""
    state = request.scope.setdefault("state", {})
    if "hearth_session" not in state:
        value = request.cookies.get(SESSION_COOKIE)
        c = container_of(request)
        state["hearth_session"] = await run_in_threadpool(c.sessions.load, value)
    session: Session | None = state["hearth_session"]
    return session


def remember_session(request: Request, session: Session | None) -> None:
    request.scope.setdefault("state", {})["hearth_session"] = session


async def current_user(request: Request) -> Principal | None:
    """The signed-in user of this browser, or None."""
    session = await load_session(request)
    if session is None or session.state is not SessionState.ACTIVE or not session.user_id:
        return None
    c = container_of(request)
    user = await run_in_threadpool(c.accounts.user, session.user_id)
    if user is None:
        return None
    return c.sessions.principal(session, user, source=client_address(request))


async def require_user(request: Request, *, step_up: bool = False) -> SignedIn:
    """The signed-in user, or an :class:`AuthRedirect` to sign in, unlock or step up."""
    session = await load_session(request)
    here = quote(_this_url(request), safe="/")
    if session is None or session.state is SessionState.PENDING:
        cross_site = request.headers.get("sec-fetch-site") == "cross-site"
        if cross_site and SESSION_COOKIE not in request.cookies and request.method == "GET":
            raise AuthRedirect(_this_url(request), bounce=True)
        raise AuthRedirect(f"/login?next={here}")
    if session.state is SessionState.LOCKED:
        raise AuthRedirect(f"/unlock?next={here}")
    principal = await current_user(request)
    if principal is None:
        raise AuthRedirect(f"/login?next={here}")
    if step_up:
        try:
            container_of(request).sessions.require_step_up(session)
        except HearthError:
            raise AuthRedirect(f"/step-up?next={here}") from None
    return SignedIn(principal, session)


async def require_console_user(request: Request, *, step_up: bool = False) -> SignedIn:
    """The signed-in user for a JSON request from the console (its script sends the session
    cookie and the ``X-CSRF-Token`` header): like :func:`require_user`, but answering with the
    error (``HRT-0701`` sign in, ``HRT-0703`` locked, ``HRT-0705`` step up) instead of a
    redirect, and checking the CSRF token of every state-changing method."""
    session = await load_session(request)
    if session is None or session.state is SessionState.PENDING:
        raise HearthError(errors.SIGN_IN_REQUIRED)
    if session.state is SessionState.LOCKED:
        raise HearthError(errors.SESSION_LOCKED)
    if request.method not in ("GET", "HEAD"):
        await check_csrf(request, request.headers.get("x-csrf-token"))
    principal = await current_user(request)
    if principal is None:
        raise HearthError(errors.SIGN_IN_REQUIRED)
    if step_up:
        container_of(request).sessions.require_step_up(session)
    return SignedIn(principal, session)


def pre_session_value(request: Request) -> str | None:
    state = request.scope.setdefault("state", {})
    value: str | None = state.get("hearth_pre") or request.cookies.get(PRE_SESSION_COOKIE)
    return value if value and len(value) <= 64 else None


async def csrf_token(request: Request) -> str:
    """The CSRF token for a form on this page: the session's, or, for a browser without a
    session, one bound to its pre-session cookie (set on the response by the page renderer)."""
    session = await load_session(request)
    c = container_of(request)
    if session is not None:
        return session.csrf
    state = request.scope.setdefault("state", {})
    value = pre_session_value(request)
    if value is None:
        value = c.sessions.new_pre_session()
        state["hearth_pre"] = value
        state["hearth_pre_new"] = True
    return c.sessions.pre_session_csrf(value)


def pre_session_cookie(request: Request) -> str | None:
    """The Set-Cookie value for a pre-session cookie made during this request, if any."""
    state = request.scope.get("state", {})
    if state.get("hearth_pre_new"):
        return f"{PRE_SESSION_COOKIE}={state['hearth_pre']}{_COOKIE_FLAGS}"
    return None


async def check_csrf(request: Request, presented: str | None) -> None:
    """Refuse a state change without this browser's CSRF token or from another origin."""
    origin = request.headers.get("origin")
    if origin is not None and origin not in _own_origins(request):
        raise HearthError(errors.CSRF_FAILED)
    session = await load_session(request)
    if session is not None:
        if not session.csrf_ok(presented):
            raise HearthError(errors.CSRF_FAILED)
        return
    value = pre_session_value(request)
    expected = container_of(request).sessions.pre_session_csrf(value) if value else ""
    if not csrf_matches(expected, presented):
        raise HearthError(errors.CSRF_FAILED)
