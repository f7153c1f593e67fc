"""Keyed pseudonyms for the de-identified view (HIPAA 164.514(c), re-identification codes).

A de-identified resource leaves with its id, and every reference in it, replaced by a pseudonym:
HMAC-SHA-256 of ``Type/id`` under a key derived (HKDF-SHA-256) from the instance's blind-index
key, truncated to 20 bytes and written in lower-case base32 (32 characters, a valid FHIR id).
The same resource always gets the same pseudonym, so a researcher can join an Observation to its
Patient; without the key nobody can go from a pseudonym back to the record, and 164.514(c)(1)
holds: the code is not derived from information about the individual in a way that can be
translated back, and the key is never disclosed.
"""

from __future__ import annotations

import base64
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["PSEUDONYM_CHARS", "pseudonym", "pseudonym_key"]

_INFO = b"hearth/pseudonym/v1"
_BYTES = 20
PSEUDONYM_CHARS = 32


def pseudonym_key(blind_key: bytes) -> bytes:
    """The pseudonym key: its own key, derived from the blind-index key for this one use."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(blind_key)


def pseudonym(key: bytes, res_type: str, res_id: str) -> str:
    """The pseudonym of ``res_type/res_id`` under ``key``."""
    digest = hmac.digest(key, f"{res_type}/{res_id}".encode(), "sha256")[:_BYTES]
    return base64.b32encode(digest).decode("ascii").lower()
