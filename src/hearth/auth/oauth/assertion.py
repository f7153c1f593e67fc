"""``private_key_jwt`` client authentication (RFC 7523 sec. 2.2, 3; SMART backend services,
SMART-BS-03..07).

The client signs a short JWT with a key from its registered JWK Set; the token endpoint checks:

- header: ``alg`` is ES384 or RS384 (SMART-BS-04; nothing else, never ``none`` or HMAC, ASVS
  9.1.2); ``kid`` names exactly one registered key whose type fits ``alg``; a ``jku``, if present,
  equals the registered JWKS URL (SMART-BS-07, ASVS 9.1.3);
- claims: ``iss`` = ``sub`` = the client id; ``aud`` is the token endpoint URL; ``exp`` is in the
  future and at most five minutes ahead; ``jti`` is present (its one-time use is checked by the
  caller against stored ids, SMART-BS-06); ``nbf``/``iat``, if present, are not in the future.

Every failure raises ``INVALID_CLIENT`` with the same message (RFC 6749 sec. 5.2).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, RSAKey

from hearth.domain import HearthError, errors

__all__ = [
    "ASSERTION_ALGS",
    "ASSERTION_TYPE",
    "MAX_ASSERTION_SECONDS",
    "VerifiedAssertion",
    "assertion_issuer",
    "validate_client_assertion",
    "validate_jwks",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ("ES384", "RS384")
MAX_ASSERTION_SECONDS = 300
_SKEW = 60
_KEY_TYPE = {"ES384": ("EC", "P-384"), "RS384": ("RSA", None)}
_MIN_RSA_BITS = 2048


def _refused() -> HearthError:
    return HearthError(errors.INVALID_CLIENT, "The client assertion is not valid.")


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    client_id: str
    jti: str
    expires_at: int


def _extract(assertion: str) -> Any:
    if assertion.count(".") != 2 or len(assertion) > 16384:
        raise _refused()
    try:
        return jws.extract_compact(assertion.encode("ascii"))
    except (JoseError, ValueError, UnicodeError):
        raise _refused() from None


def _payload(obj: Any) -> dict[str, Any]:
    try:
        claims = json.loads(obj.payload)
    except ValueError:
        raise _refused() from None
    if not isinstance(claims, dict):
        raise _refused()
    return claims


def assertion_issuer(assertion: str) -> str:
    """The unverified ``iss``, which names the client whose keys will verify the assertion."""
    issuer = _payload(_extract(assertion)).get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise _refused()
    return issuer


def validate_jwks(jwks: object) -> dict[str, Any]:
    """Check a client's JWK Set at registration (SMART-BS-03): public keys with ``kty`` and
    ``kid``, EC P-384 or RSA of at least 2048 bits; private members are refused."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise HearthError(errors.INVALID_CLIENT_METADATA, "The JWK Set has no keys.")
    for jwk in jwks["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or not jwk["kid"]:
            raise HearthError(errors.INVALID_CLIENT_METADATA, "Every JWK needs a kid.")
        if jwk.get("kty") not in ("EC", "RSA"):
            raise HearthError(errors.INVALID_CLIENT_METADATA, "JWKs must be EC or RSA keys.")
        if "d" in jwk:
            raise HearthError(
                errors.INVALID_CLIENT_METADATA,
                "Register public keys only: a JWK holds a private key.",
            )
        if jwk["kty"] == "RSA" and _rsa_bits(jwk) < _MIN_RSA_BITS:
            raise HearthError(errors.INVALID_CLIENT_METADATA, "RSA keys need 2048 bits or more.")
        try:
            JWKRegistry.import_key(jwk)
        except (JoseError, ValueError, TypeError):
            raise HearthError(errors.INVALID_CLIENT_METADATA, "A JWK is malformed.") from None
    return jwks


def _rsa_bits(jwk: Mapping[str, Any]) -> int:
    """The modulus length of an RSA JWK (RFC 7518 sec. 6.3.1.1), 0 when unreadable."""
    n = jwk.get("n")
    if not isinstance(n, str):
        return 0
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except ValueError:
        return 0
    return int.from_bytes(raw, "big").bit_length()


def _pick_key(jwks: Mapping[str, Any], kid: str, alg: str) -> ECKey | RSAKey:
    kty, crv = _KEY_TYPE[alg]
    matches = [
        jwk
        for jwk in jwks.get("keys", [])
        if isinstance(jwk, dict)
        and jwk.get("kid") == kid
        and jwk.get("kty") == kty
        and (crv is None or jwk.get("crv") == crv)
    ]
    if len(matches) != 1:  # zero or several matches fail (SMART-BS-07)
        raise _refused()
    if kty == "RSA" and _rsa_bits(matches[0]) < _MIN_RSA_BITS:  # e.g. from a JWKS URL
        raise _refused()
    public = {k: v for k, v in matches[0].items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
    try:
        key = JWKRegistry.import_key(public)
    except (JoseError, ValueError, TypeError):
        raise _refused() from None
    return key  # type: ignore[return-value] # kty was checked to be EC or RSA above


def validate_client_assertion(
    assertion: str,
    *,
    client_id: str,
    jwks: Mapping[str, Any],
    token_url: str,
    now: int,
    registered_jku: str | None,
) -> VerifiedAssertion:
    """Verify a client assertion against the client's JWK Set (RFC 7523 sec. 3)."""
    obj = _extract(assertion)
    header = obj.headers()
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ASSERTION_ALGS or not isinstance(kid, str):
        raise _refused()
    jku = header.get("jku")
    if jku is not None and jku != registered_jku:
        raise _refused()
    key = _pick_key(jwks, kid, alg)
    try:
        valid = jws.validate_compact(obj, key, algorithms=[alg])
    except (JoseError, ValueError):  # pragma: no cover - joserfc reports a bad signature as False
        raise _refused() from None
    if not valid:
        raise _refused()
    claims = _payload(obj)
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise _refused()
    audience = claims.get("aud")
    if audience != token_url and not (isinstance(audience, list) and token_url in audience):
        raise _refused()
    exp, jti = claims.get("exp"), claims.get("jti")
    if type(exp) is not int or not (now < exp <= now + MAX_ASSERTION_SECONDS + _SKEW):
        raise _refused()
    if not isinstance(jti, str) or not 0 < len(jti) <= 255:
        raise _refused()
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is not None and (type(value) is not int or value > now + _SKEW):
            raise _refused()
    return VerifiedAssertion(client_id, jti, exp)
