"""OAuth 2 and SMART App Launch 2.2 protocol logic: pure, with time and randomness passed in.

- :mod:`~hearth.auth.oauth.tokens`: access and ID tokens as JWTs (RFC 9068), signing keys;
- :mod:`~hearth.auth.oauth.assertion`: ``private_key_jwt`` client assertions (RFC 7523);
- :mod:`~hearth.auth.oauth.authorization`: the authorization request and what approval stores;
- :mod:`~hearth.auth.oauth.pkce`: PKCE, S256 only (RFC 7636);
- :mod:`~hearth.auth.oauth.scopes`: requested and granted scopes;
- :mod:`~hearth.auth.oauth.secrets`: opaque refresh tokens, codes and client secrets;
- :mod:`~hearth.auth.oauth.discovery`: ``.well-known/smart-configuration``;
- :mod:`~hearth.auth.oauth.errors`: RFC 6749 error strings for Hearth's error codes.

JOSE work goes through joserfc; the signing keys themselves come from ``hearth.crypto``.
"""

from hearth.auth.oauth.assertion import ASSERTION_ALGS, ASSERTION_TYPE, validate_client_assertion
from hearth.auth.oauth.authorization import (
    ApprovedRequest,
    AuthorizationRequest,
    validate_authorization_request,
    validate_redirect,
)
from hearth.auth.oauth.discovery import Endpoints, oauth_uris, smart_configuration
from hearth.auth.oauth.errors import oauth_error, oauth_error_body
from hearth.auth.oauth.pkce import s256_challenge, verify_code_verifier
from hearth.auth.oauth.scopes import ScopeRequest, grant_scopes
from hearth.auth.oauth.tokens import AccessClaims, TokenKeys, looks_like_jwt

__all__ = [
    "ASSERTION_ALGS",
    "ASSERTION_TYPE",
    "AccessClaims",
    "ApprovedRequest",
    "AuthorizationRequest",
    "Endpoints",
    "ScopeRequest",
    "TokenKeys",
    "grant_scopes",
    "looks_like_jwt",
    "oauth_error",
    "oauth_error_body",
    "oauth_uris",
    "s256_challenge",
    "smart_configuration",
    "validate_authorization_request",
    "validate_client_assertion",
    "validate_redirect",
    "verify_code_verifier",
]
