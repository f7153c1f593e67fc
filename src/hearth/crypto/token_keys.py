"""Access-token signing keys: ECDSA P-256 keys derived from key-ring seeds, as JWKs.

The key ring stores every key as 32 random bytes wrapped by the KEK. A token signing key is
derived from its seed deterministically (HKDF-SHA-256, RFC 5869, to 48 bytes, reduced into
[1, n-1]; the 128 extra bits make the bias negligible), so it rotates, wraps and retires like
every other key. The private JWK (RFC 7517/7518 sec. 6.2) goes only to ``hearth.auth``, which
signs with it through joserfc; the JWKS endpoint publishes the public half.
"""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["TOKEN_KEY_ALG", "p256_jwk_from_seed"]

#: The JWS algorithm of every access and ID token Hearth signs (RFC 7518 sec. 3.4).
TOKEN_KEY_ALG = "ES256"  # noqa: S105 - an algorithm name

_INFO = b"hearth/token-sign/v1/p256"
# Order of the P-256 group (SEC 2, sec. 2.4.2).
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _b64(value: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(32, "big")).rstrip(b"=").decode("ascii")


def p256_jwk_from_seed(seed: bytes) -> dict[str, str]:
    """The private P-256 JWK derived from a 32-byte key-ring seed."""
    okm = HKDF(algorithm=hashes.SHA256(), length=48, salt=None, info=_INFO).derive(seed)
    scalar = int.from_bytes(okm, "big") % (_N - 1) + 1
    key = ec.derive_private_key(scalar, ec.SECP256R1())
    public = key.public_key().public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64(public.x),
        "y": _b64(public.y),
        "d": _b64(scalar),
    }
