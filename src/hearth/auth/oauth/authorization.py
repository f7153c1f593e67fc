"""The authorization request (RFC 6749 sec. 4.1.1; RFC 7636; SMART App Launch 2.2 "authorization
request"), validated before the user is asked anything, and what an approval stores.

Validation order matters: until the client and its exact redirect URI are known, an error must
not be sent to the redirect URI (RFC 6749 sec. 4.1.2.1, an open redirector otherwise); after
that, errors go back to the app with its ``state``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from hearth.auth.oauth.pkce import validate_code_challenge
from hearth.auth.oauth.scopes import ScopeRequest
from hearth.domain import HearthError, errors

__all__ = [
    "ApprovedRequest",
    "AuthorizationRequest",
    "validate_authorization_request",
    "validate_redirect",
]


@dataclass(frozen=True, slots=True)
class AuthorizationRequest:
    """A request that passed every check; the user has not yet been asked."""

    client_id: str
    redirect_uri: str
    scope: ScopeRequest
    state: str
    code_challenge: str
    launch: str | None
    nonce: str | None
    break_glass: str | None = None  # ``hearth_break_glass``: the user's grant to act under


@dataclass(frozen=True, slots=True)
class ApprovedRequest:
    """What the user approved, stored with the authorization code until it is redeemed."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    subject: str
    roles: tuple[str, ...]
    scope: str  # the granted scopes, space-separated
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    nonce: str | None = None
    auth_time: int | None = None
    break_glass: str | None = None

    def to_json(self) -> str:
        return orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS).decode("utf-8")

    @classmethod
    def from_json(cls, text: str) -> ApprovedRequest:
        data: dict[str, Any] = orjson.loads(text)
        data["roles"] = tuple(data["roles"])
        return cls(**data)


def validate_redirect(
    params: Mapping[str, str], *, registered_redirects: Collection[str] | None
) -> str:
    """The redirect URI, exactly as registered (SMART-PK-02, ASVS 10.4.1).

    ``registered_redirects`` is None for an unknown or revoked client. Errors here must be
    shown to the user, never sent to the URI.
    """
    if registered_redirects is None:
        raise HearthError(errors.INVALID_REDIRECT)
    redirect = params.get("redirect_uri")
    if redirect is None and len(registered_redirects) == 1:
        return next(iter(registered_redirects))  # RFC 6749 sec. 3.1.2.3
    if redirect is None or redirect not in registered_redirects:
        raise HearthError(errors.INVALID_REDIRECT)
    return redirect


def validate_authorization_request(
    params: Mapping[str, str],
    *,
    redirect_uri: str,
    fhir_base: str,
) -> AuthorizationRequest:
    """Check an authorization request whose client and redirect URI are already known."""
    if params.get("response_type") != "code":
        raise HearthError(errors.UNSUPPORTED_RESPONSE_TYPE)  # no implicit flow (ASVS 10.6.1)
    state = params.get("state")
    # SMART-PK-03: the app's state must be unpredictable; 122 bits is at least 21 characters
    # of base64, so shorter values cannot be right.
    if state is None or not 16 <= len(state) <= 512:
        raise HearthError(errors.OAUTH_INVALID_REQUEST, "state is required (16 to 512 chars).")
    if params.get("aud") != fhir_base:  # SMART-PK-04: token redirection defence
        raise HearthError(errors.OAUTH_INVALID_REQUEST, "aud must be this server's FHIR base URL.")
    challenge = validate_code_challenge(
        params.get("code_challenge"), params.get("code_challenge_method")
    )
    scope = ScopeRequest.parse(params.get("scope"))
    launch = params.get("launch")
    if launch is not None and "launch" not in scope.other:
        raise HearthError(errors.INVALID_SCOPE, "An EHR launch needs the launch scope.")
    if launch is None and "launch" in scope.other:
        raise HearthError(errors.OAUTH_INVALID_REQUEST, "The launch scope needs a launch value.")
    nonce = params.get("nonce")
    if nonce is not None and len(nonce) > 512:
        raise HearthError(errors.OAUTH_INVALID_REQUEST, "nonce is too long.")
    # Hearth's own parameter: act under the user's break-the-glass grant. Whose grant it is,
    # and whether it is active, the service checks; here only its size.
    break_glass = params.get("hearth_break_glass") or None
    if break_glass is not None and len(break_glass) > 64:
        raise HearthError(errors.BREAK_GLASS_NOT_ACTIVE)
    return AuthorizationRequest(
        client_id=params["client_id"],
        redirect_uri=redirect_uri,
        scope=scope,
        state=state,
        code_challenge=challenge,
        launch=launch,
        nonce=nonce,
        break_glass=break_glass,
    )
