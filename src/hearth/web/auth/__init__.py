"""Sign-in pages and the session interface the console and OAuth endpoints build on.

Use from another web module::

    from hearth.web.auth import current_user, require_user, check_csrf, csrf_token

    async def authorize(request):
        signed_in = await require_user(request)           # or an AuthRedirect to /login?next=
        ...                                               # signed_in.principal: Principal
        await check_csrf(request, form["csrf"])           # before any state change

``require_user(request, step_up=True)`` also demands a second factor within the last
``[sessions] step_up_minutes`` (export, break-the-glass, user administration);
``require_console_user`` is the same check for the console's JSON calls, answering with an
error instead of a redirect.
"""

from hearth.web.auth.guard import (
    PRE_SESSION_COOKIE,
    SESSION_COOKIE,
    AuthRedirect,
    SignedIn,
    check_csrf,
    csrf_token,
    current_user,
    load_session,
    require_console_user,
    require_user,
)
from hearth.web.auth.routes import auth_routes

__all__ = [
    "PRE_SESSION_COOKIE",
    "SESSION_COOKIE",
    "AuthRedirect",
    "SignedIn",
    "auth_routes",
    "check_csrf",
    "csrf_token",
    "current_user",
    "load_session",
    "require_console_user",
    "require_user",
]
