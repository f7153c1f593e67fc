"""Keyed blind indexes: HMAC-SHA-256 of a normalised value, truncated to 16 bytes.

A blind index lets SQL find rows whose value equals a search term without the database ever
holding the value. The key never leaves the key ring; without it, a stolen database offers only
frequency analysis of equal values, which the design document discusses.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["BLIND_BYTES", "blind_index"]

BLIND_BYTES = 16


def blind_index(key: bytes, domain: str, value: str) -> bytes:
    """Index token for ``value`` in ``domain`` (e.g. ``"Patient.name"``); domains never collide."""
    message = domain.encode("utf-8") + b"\x00" + value.encode("utf-8")
    return hmac.new(key, message, hashlib.sha256).digest()[:BLIND_BYTES]
