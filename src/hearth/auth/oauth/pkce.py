"""Proof Key for Code Exchange, S256 only (RFC 7636; SMART-PK-01, ASVS 10.4.6).

``plain`` is refused: a server that accepted it would give no protection against a stolen
authorization code, which is what PKCE is for.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from hearth.domain import HearthError, errors

__all__ = ["s256_challenge", "validate_code_challenge", "verify_code_verifier"]

# RFC 7636 sec. 4.1: 43 to 128 unreserved characters. A S256 challenge is the 43-character
# base64url SHA-256 (sec. 4.2).
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


def s256_challenge(verifier: str) -> str:
    """``BASE64URL(SHA256(ASCII(code_verifier)))`` (RFC 7636 sec. 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def validate_code_challenge(challenge: str | None, method: str | None) -> str:
    """Check an authorization request's challenge (RFC 7636 sec. 4.3, 4.4.1)."""
    if method != "S256":
        raise HearthError(
            errors.OAUTH_INVALID_REQUEST, "PKCE is required, with code_challenge_method=S256."
        )
    if challenge is None or not _CHALLENGE.fullmatch(challenge):
        raise HearthError(errors.OAUTH_INVALID_REQUEST, "code_challenge is missing or malformed.")
    return challenge


def verify_code_verifier(verifier: str | None, challenge: str) -> None:
    """Check the token request's verifier against the stored challenge (RFC 7636 sec. 4.6)."""
    if verifier is None or not _VERIFIER.fullmatch(verifier):
        raise HearthError(errors.INVALID_GRANT, "code_verifier is missing or malformed.")
    if not hmac.compare_digest(s256_challenge(verifier), challenge):
        raise HearthError(errors.INVALID_GRANT, "code_verifier does not match the challenge.")
