"""The password pepper: a keyed hash under a secret held outside the database (NIST-PW-14).

NIST SP 800-63B-4 sec. 3.1.1.2 suggests an additional keyed hashing pass "with a secret key held
separately" from the hashed passwords, so that a stolen database alone does not allow an offline
guessing attack at all. Hearth computes ``HMAC-SHA256(key, label || 0x00 || NFKC(secret))``
before argon2id. The key id is stored beside the hash, so the key can rotate: hashes made under
an old key still verify while that key is configured, and are re-made under the current key at
the next successful sign-in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

__all__ = ["KEY_ID_PATTERN", "MIN_KEY_BYTES", "PepperRing"]

#: Key ids are stored in the clear beside each hash; keep them short and printable.
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")

#: HMAC-SHA256 keys shorter than the hash output add no strength; 32 bytes is also what NIST SP
#: 800-107 sec. 5.3.4 asks for a 256-bit security strength.
MIN_KEY_BYTES = 32


class PepperRing:
    """The pepper keys by id, and which one new hashes use. Never prints its keys."""

    __slots__ = ("_current", "_keys")

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError("the current pepper key id is not among the keys")
        for key_id, key in keys.items():
            if not KEY_ID_PATTERN.fullmatch(key_id):
                raise ValueError("pepper key ids are 1 to 64 characters of A-Z a-z 0-9 . _ -")
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(f"pepper keys must be at least {MIN_KEY_BYTES} bytes")
        self._keys = dict(keys)
        self._current = current

    @property
    def current(self) -> str:
        """The id of the key that new hashes are made under."""
        return self._current

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def mac(self, key_id: str, label: bytes, secret: bytes) -> bytes:
        """``HMAC-SHA256(key, label || 0x00 || secret)``; raises ``KeyError`` for unknown ids.

        The label separates uses (passwords, PINs, recovery codes), so a value computed for one
        kind of secret is never valid for another.
        """
        return hmac.new(self._keys[key_id], label + b"\x00" + secret, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"PepperRing(current={self._current!r}, keys=**********)"
