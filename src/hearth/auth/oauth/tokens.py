"""Access and ID tokens: JWTs signed with Hearth's token keys (RFC 9068, RFC 7519, OIDC Core).

Access tokens are JWTs of type ``at+jwt`` (RFC 9068 sec. 2.1) signed ES256 with the active
token key, named by ``kid`` (its RFC 7638 thumbprint). The resource server verifies the
signature with whichever known key the ``kid`` names, then checks type, issuer, audience and
time (ASVS 9.1.1, 9.1.2, 9.2.1-9.2.3). Every failure raises the same ``UNAUTHENTICATED`` error:
a caller learns nothing about which check failed.

Claims: ``iss`` and ``aud`` (the FHIR base URL), ``sub`` (user id, or client id for a backend
service), ``client_id``, ``scope``, ``jti``, ``iat``, ``exp``, ``grant`` (the authorization grant,
checked for revocation on every request), and when present ``patient``, ``encounter``,
``fhirUser`` (SMART-LC-03), ``cnf`` with ``x5t#S256`` (a certificate-bound token, RFC 8705
sec. 3) and ``hearth_break_glass``, the id of the user's break-the-glass grant the token acts
under (a private claim, RFC 7519 sec. 4.3; the resource server checks the grant on every
request, exactly as for the ``X-Hearth-Break-Glass`` header).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from hearth.domain import HearthError, errors

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "BREAK_GLASS_CLAIM",
    "SIGNING_ALG",
    "AccessClaims",
    "TokenKeys",
    "invalid_token",
    "looks_like_jwt",
]

#: The private claim naming the break-the-glass grant an access token acts under.
BREAK_GLASS_CLAIM = "hearth_break_glass"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
SIGNING_ALG = "ES256"
#: Tolerated clock difference for ``iat`` and ``nbf`` (never for ``exp``).
_SKEW = 60


def invalid_token() -> HearthError:
    """The one error every refused access token gets (RFC 6750 sec. 3.1)."""
    return HearthError(
        errors.UNAUTHENTICATED,
        "The access token is not valid.",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def looks_like_jwt(token: str) -> bool:
    """Three base64url segments: a compact JWS (RFC 7515 sec. 7.1)."""
    parts = token.split(".")
    return len(parts) == 3 and all(parts)


@dataclass(frozen=True, slots=True)
class AccessClaims:
    issuer: str
    audience: str
    subject: str
    client_id: str
    scope: str
    grant_id: str
    token_id: str
    issued_at: int
    expires_at: int
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    cnf_thumbprint: str | None = None
    break_glass: str | None = None

    def as_claims(self) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": self.subject,
            "client_id": self.client_id,
            "scope": self.scope,
            "grant": self.grant_id,
            "jti": self.token_id,
            "iat": self.issued_at,
            "exp": self.expires_at,
        }
        if self.patient is not None:
            claims["patient"] = self.patient
        if self.encounter is not None:
            claims["encounter"] = self.encounter
        if self.fhir_user is not None:
            claims["fhirUser"] = self.fhir_user
        if self.cnf_thumbprint is not None:
            claims["cnf"] = {"x5t#S256": self.cnf_thumbprint}
        if self.break_glass is not None:
            claims[BREAK_GLASS_CLAIM] = self.break_glass
        return claims

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> AccessClaims:
        """Read verified claims; raise ``invalid_token`` on any missing or mistyped one."""
        strings = ("iss", "aud", "sub", "client_id", "scope", "grant", "jti")
        if not all(isinstance(claims.get(k), str) for k in strings):
            raise invalid_token()
        if not all(type(claims.get(k)) is int for k in ("iat", "exp")):
            raise invalid_token()
        optional: dict[str, str | None] = {}
        for key in ("patient", "encounter", "fhirUser", BREAK_GLASS_CLAIM):
            value = claims.get(key)
            if value is not None and not isinstance(value, str):
                raise invalid_token()
            optional[key] = value
        cnf = claims.get("cnf")
        thumbprint: str | None = None
        if cnf is not None:
            thumbprint = cnf.get("x5t#S256") if isinstance(cnf, dict) else None
            if not isinstance(thumbprint, str):
                raise invalid_token()  # a confirmation we do not understand: refuse
        return cls(
            issuer=claims["iss"],
            audience=claims["aud"],
            subject=claims["sub"],
            client_id=claims["client_id"],
            scope=claims["scope"],
            grant_id=claims["grant"],
            token_id=claims["jti"],
            issued_at=claims["iat"],
            expires_at=claims["exp"],
            patient=optional["patient"],
            encounter=optional["encounter"],
            fhir_user=optional["fhirUser"],
            cnf_thumbprint=thumbprint,
            break_glass=optional[BREAK_GLASS_CLAIM],
        )


class TokenKeys:
    """Signs with the active token key; verifies with any key not yet retired (rotation)."""

    def __init__(self, private_jwks: Mapping[int, Mapping[str, str]], active: int | None) -> None:
        self._by_kid: dict[str, ECKey] = {}
        self._active: ECKey | None = None
        for key_id, jwk in private_jwks.items():
            key = ECKey.import_key(dict(jwk))
            self._by_kid[key.thumbprint()] = key
            if key_id == active:
                self._active = key

    @property
    def can_sign(self) -> bool:
        return self._active is not None

    @property
    def active_kid(self) -> str | None:
        return self._active.thumbprint() if self._active is not None else None

    def public_jwks(self) -> dict[str, Any]:
        """The JWK Set (RFC 7517 sec. 5) the ``jwks_uri`` serves: public halves only."""
        keys = [
            {**key.as_dict(private=False), "kid": kid, "use": "sig", "alg": SIGNING_ALG}
            for kid, key in sorted(self._by_kid.items())
        ]
        return {"keys": keys}

    def sign(self, claims: Mapping[str, Any], *, typ: str) -> str:
        if self._active is None:
            raise HearthError(errors.KEY_UNAVAILABLE, "There is no active token signing key.")
        header = {"alg": SIGNING_ALG, "kid": self._active.thumbprint(), "typ": typ}
        payload = json.dumps(dict(claims), separators=(",", ":"), sort_keys=True)
        return jws.serialize_compact(header, payload, self._active, algorithms=[SIGNING_ALG])

    def sign_access_token(self, claims: AccessClaims) -> str:
        return self.sign(claims.as_claims(), typ=ACCESS_TOKEN_TYPE)

    def verify(self, token: str, *, typ: str) -> dict[str, Any]:
        """Verify the signature and type; return the claims, unchecked for time and audience."""
        if not looks_like_jwt(token) or len(token) > 8192:
            raise invalid_token()
        try:
            obj = jws.extract_compact(token.encode("ascii"))
            header = obj.headers()
            key = self._by_kid.get(str(header.get("kid")))
            if key is None or header.get("typ") != typ or header.get("alg") != SIGNING_ALG:
                raise invalid_token()
            if not jws.validate_compact(obj, key, algorithms=[SIGNING_ALG]):
                raise invalid_token()
            claims = json.loads(obj.payload)
        except (JoseError, ValueError, UnicodeError):
            raise invalid_token() from None
        if not isinstance(claims, dict):
            raise invalid_token()
        return claims

    def verify_access_token(
        self, token: str, *, issuer: str, audience: str, now: int
    ) -> AccessClaims:
        """Verify an access token for this resource server (RFC 9068 sec. 4)."""
        claims = AccessClaims.from_claims(self.verify(token, typ=ACCESS_TOKEN_TYPE))
        if claims.issuer != issuer or claims.audience != audience:
            raise invalid_token()
        if not (claims.issued_at - _SKEW <= now < claims.expires_at):
            raise invalid_token()
        return claims
