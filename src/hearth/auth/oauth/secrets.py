"""Opaque one-time secrets: refresh tokens, authorization codes, client secrets, launch ids.

Format ``<prefix>_<id>_<secret>``: the id finds the row, the 256-bit secret proves possession
and is stored only as a SHA-256 digest bound to the prefix (a fast hash suffices for 256 bits
of entropy; comparison is constant-time). The prefix says what a value is, so one kind can
never be presented as another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from hearth.domain import Random

__all__ = [
    "AUTH_CODE",
    "CLIENT_SECRET",
    "REFRESH_TOKEN",
    "IssuedSecret",
    "issue_secret",
    "new_id",
    "parse_secret",
    "secret_matches",
]

REFRESH_TOKEN = "hrr"  # noqa: S105 - a prefix, not a secret
AUTH_CODE = "hrc"
CLIENT_SECRET = "hrs"  # noqa: S105 - a prefix, not a secret


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    secret_id: str
    value: str  # shown once, never stored
    digest: bytes


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def new_id(random: Random, nbytes: int = 15) -> str:
    """A random identifier (120 bits by default), lower-case base32."""
    return _b32(random.token_bytes(nbytes))


def _digest(prefix: str, secret: str) -> bytes:
    return hashlib.sha256(f"hearth/oauth-secret/v1\x00{prefix}\x00{secret}".encode()).digest()


def issue_secret(prefix: str, random: Random) -> IssuedSecret:
    secret_id = new_id(random, 10)
    secret = _b32(random.token_bytes(32))
    return IssuedSecret(secret_id, f"{prefix}_{secret_id}_{secret}", _digest(prefix, secret))


def parse_secret(prefix: str, value: str) -> tuple[str, str] | None:
    """Split a presented value into (id, secret), or None when it is not this kind."""
    parts = value.split("_")
    if len(parts) != 3 or parts[0] != prefix or not parts[1] or not parts[2]:
        return None
    if not (parts[1].isascii() and parts[1].isalnum() and parts[2].isascii()):
        return None
    return parts[1], parts[2]


def secret_matches(prefix: str, secret: str, digest: bytes) -> bool:
    return hmac.compare_digest(_digest(prefix, secret), digest)
