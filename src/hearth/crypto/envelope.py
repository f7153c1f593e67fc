"""Sealed blobs: AES-256-GCM under a data key from the key ring (NIST SP 800-38D).

Format, version 1::

    0x01 | key id (4 bytes, big endian) | nonce (12 bytes) | ciphertext || tag (16 bytes)

The associated data given to GCM is ``0x01 | key id | caller aad``, so the version byte and key id
are authenticated as well as the caller's binding (type, id, version of a resource; sequence of
an audit entry). A blob moved to another row, or relabelled with another key id, fails to open.
Readers reject any other leading byte.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hearth.domain import IntegrityError, Random

__all__ = ["ENVELOPE_V1", "NONCE_BYTES", "open_sealed", "seal", "sealed_key_id"]

ENVELOPE_V1 = b"\x01"
NONCE_BYTES = 12
_HEADER = struct.Struct(">cI")
_HEADER_BYTES = _HEADER.size + NONCE_BYTES
_TAG_BYTES = 16


def seal(plaintext: bytes, *, key_id: int, key: AESGCM, aad: bytes, random: Random) -> bytes:
    """Encrypt ``plaintext`` under ``key`` (a 256-bit AES-GCM key), binding ``aad``.

    The 96-bit nonce is random; with at most 2**32 messages per key (NIST SP 800-38D 8.3) a
    key must be rotated long before that, which ``hearth keys rotate`` does.
    """
    header = _HEADER.pack(ENVELOPE_V1, key_id)
    nonce = random.token_bytes(NONCE_BYTES)
    return header + nonce + key.encrypt(nonce, plaintext, header + aad)


def sealed_key_id(blob: bytes) -> int:
    """The key id a blob was sealed under, for key retirement checks. Raises on a bad header."""
    if len(blob) < _HEADER_BYTES + _TAG_BYTES or blob[:1] != ENVELOPE_V1:
        raise IntegrityError()
    return int(_HEADER.unpack_from(blob)[1])


def open_sealed(blob: bytes, *, key: AESGCM, aad: bytes) -> bytes:
    """Decrypt and authenticate a sealed blob; every failure raises the same ``IntegrityError``."""
    if len(blob) < _HEADER_BYTES + _TAG_BYTES or blob[:1] != ENVELOPE_V1:
        raise IntegrityError()
    header = blob[: _HEADER.size]
    nonce = blob[_HEADER.size : _HEADER_BYTES]
    try:
        return key.decrypt(nonce, blob[_HEADER_BYTES:], header + aad)
    except InvalidTag:
        raise IntegrityError() from None
