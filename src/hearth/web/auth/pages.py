"""Server-rendered sign-in pages: sign-in, second factor, set-up, unlock, step-up, account.

Plain HTML with every dynamic value escaped where it is written (``e()``, ASVS
v5.0.0-1.2.1), no template engine and no inline script or style: the only script is
``/static/hearth.js`` and the only style ``/static/hearth.css``, which the page's
Content-Security-Policy allows by origin (``'self'``) and nothing else (ASVS v5.0.0-3.4.3). No
third-party asset is loaded. Every input has a label; errors are announced (``role="alert"``)
and get focus; each page has one ``h1`` and a skip target (``main``).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.responses import HTMLResponse

__all__ = [
    "PAGE_CSP",
    "Nav",
    "e",
    "form",
    "key_button",
    "page",
]

#: The pages' policy: only this origin's script, style, fetches and form targets; nothing may
#: frame them; no plugins, no base-URI games.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "object-src 'none'"
)


def e(value: object) -> str:
    """Escape for HTML text and double-quoted attributes."""
    return html.escape(str(value), quote=True)


@dataclass(frozen=True, slots=True)
class Nav:
    """The signed-in user's bar: who, and the always-visible Lock and Sign out (ASVS
    v5.0.0-7.4.4)."""

    display: str
    csrf: str


def page(
    title: str,
    body: str,
    *,
    status: int = 200,
    nav: Nav | None = None,
    error: str | None = None,
    notice: str | None = None,
    headers: dict[str, str] | None = None,
    refresh_to: str | None = None,
) -> HTMLResponse:
    """A whole page. ``error`` is announced to screen readers and takes focus."""
    banner = ""
    if error:
        banner += f'<div class="error" role="alert" tabindex="-1" id="error">{e(error)}</div>'
    if notice:
        banner += f'<div class="notice" role="status">{e(notice)}</div>'
    bar = ""
    if nav is not None:
        lock = form("/lock", nav.csrf, '<button type="submit">Lock</button>', cls="inline")
        out = form("/logout", nav.csrf, '<button type="submit">Sign out</button>', cls="inline")
        bar = (
            f'<nav aria-label="Account"><span class="who">Signed in as {e(nav.display)}</span>'
            f'<a href="/account">Account</a>{lock}{out}</nav>'
        )
    refresh = f'<meta http-equiv="refresh" content="0;url={e(refresh_to)}">' if refresh_to else ""
    document = (
        "<!doctype html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="same-origin">'
        f"{refresh}<title>{e(title)} - Hearth</title>"
        '<link rel="stylesheet" href="/static/hearth.css">'
        '<script src="/static/hearth.js" defer></script></head>'
        '<body><a class="skip" href="#main">Skip to content</a>'
        f'<header><a class="brand" href="/">Hearth</a>{bar}</header>'
        f'<main id="main" tabindex="-1"><h1>{e(title)}</h1>{banner}{body}</main>'
        "</body></html>"
    )
    all_headers = {
        "content-security-policy": PAGE_CSP,
        "cache-control": "no-store",
        # Same-origin requests keep their Origin header (with no-referrer, browsers send
        # "Origin: null" on form posts, and the CSRF check compares it); other sites get
        # nothing, so URLs never leak (ASVS v5.0.0-3.4.5).
        "referrer-policy": "same-origin",
        **(headers or {}),
    }
    return HTMLResponse(document, status_code=status, headers=all_headers)


def form(
    action: str, csrf: str, inner: str, *, cls: str = "", hidden: dict[str, str] | None = None
) -> str:
    """A POST form carrying the CSRF token."""
    fields = "".join(
        f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in (hidden or {}).items()
    )
    klass = f' class="{e(cls)}"' if cls else ""
    return (
        f'<form method="post" action="{e(action)}"{klass}>'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">{fields}{inner}</form>'
    )


def field(
    name: str,
    label: str,
    *,
    kind: str = "text",
    autocomplete: str = "off",
    hint: str | None = None,
    autofocus: bool = False,
    extra: str = "",
) -> str:
    """A labelled input; a hint is tied to it with ``aria-describedby``."""
    hint_html = f'<p class="hint" id="{e(name)}-hint">{e(hint)}</p>' if hint else ""
    described = f' aria-describedby="{e(name)}-hint"' if hint else ""
    focus = " autofocus" if autofocus else ""
    return (
        f'<p class="field"><label for="{e(name)}">{e(label)}</label>'
        f'<input id="{e(name)}" name="{e(name)}" type="{e(kind)}" '
        f'autocomplete="{e(autocomplete)}" required{described}{focus}{extra}></p>{hint_html}'
    )


def key_button(
    label: str,
    *,
    action: str,
    options_url: str,
    verify_url: str,
    csrf: str,
    extra: dict[str, str] | None = None,
    button_id: str | None = None,
) -> str:
    """A button that runs a WebAuthn ceremony in ``/static/hearth.js`` (``action`` is ``get``
    or ``create``). Its result is announced in the status element after it."""
    data = "".join(f' data-{e(k)}="{e(v)}"' for k, v in (extra or {}).items())
    ident = f' id="{e(button_id)}"' if button_id else ""
    return (
        f'<div class="webauthn"><button type="button"{ident} data-webauthn="{e(action)}" '
        f'data-options="{e(options_url)}" data-verify="{e(verify_url)}" data-csrf="{e(csrf)}"'
        f"{data}>{e(label)}</button>"
        '<p class="status" role="status" aria-live="polite"></p></div>'
    )


def bullet_list(items: Iterable[str]) -> str:
    return "<ul>" + "".join(f"<li>{e(i)}</li>" for i in items) + "</ul>"


def codes_list(codes: Sequence[str]) -> str:
    return '<ol class="codes">' + "".join(f"<li><code>{e(c)}</code></li>" for c in codes) + "</ol>"
