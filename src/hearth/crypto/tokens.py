"""Opaque bearer tokens: ``hrt_<id>_<secret>``, stored as SHA-256 of the secret.

The secret has 256 bits of entropy, so a fast hash is enough (a slow password hash protects
low-entropy secrets, which these are not); comparison is constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from hearth.domain import Random

__all__ = ["IssuedToken", "digest_secret", "issue", "parse", "secret_matches"]

_PREFIX = "hrt"


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token_id: str
    token: str  # shown once, never stored
    digest: bytes


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def digest_secret(secret: str) -> bytes:
    return hashlib.sha256(b"hearth/token/v1\x00" + secret.encode("ascii")).digest()


def issue(random: Random) -> IssuedToken:
    token_id = _b32(random.token_bytes(10))
    secret = _b32(random.token_bytes(32))
    return IssuedToken(token_id, f"{_PREFIX}_{token_id}_{secret}", digest_secret(secret))


def parse(token: str) -> tuple[str, str] | None:
    """Split a presented token into (id, secret), or None when it is not one of ours."""
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != _PREFIX or not parts[1] or not parts[2]:
        return None
    if not (parts[1].isascii() and parts[2].isascii()):
        return None
    return parts[1], parts[2]


def secret_matches(secret: str, digest: bytes) -> bool:
    return hmac.compare_digest(digest_secret(secret), digest)
