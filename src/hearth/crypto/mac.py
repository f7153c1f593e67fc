"""Per-version MACs (HMAC-SHA-256, RFC 2104) under an integrity key separate from the data keys.

The MAC covers the row's identity and the SHA-256 of the plaintext body, not the ciphertext, so
re-sealing a version under a new data key (key retirement) leaves its MAC unchanged, and backups
restored into another engine reproduce the same MACs. Layout of the MAC input, version 1::

    "hearth/mac/v1" 0x00 | seq (8) | version (4) | deleted (1) | last_updated µs (8)
    | len(type) (1) | type | len(id) (1) | id | SHA-256(body)
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from hearth.domain import IntegrityError

__all__ = [
    "MAC_BYTES",
    "MAC_FIXED",
    "MAC_PREFIX",
    "body_digest",
    "chain_link",
    "compute_mac",
    "verify_mac",
]

MAC_BYTES = 32
MAC_PREFIX = b"hearth/mac/v1\x00"
MAC_FIXED = struct.Struct(">QIBq")


def body_digest(body: bytes | None) -> bytes:
    return hashlib.sha256(body or b"").digest()


def _message(
    *, seq: int, res_type: str, res_id: str, version: int, deleted: bool, ts_us: int, digest: bytes
) -> bytes:
    t = res_type.encode("ascii")
    i = res_id.encode("ascii")
    return b"".join(
        (
            MAC_PREFIX,
            MAC_FIXED.pack(seq, version, int(deleted), ts_us),
            bytes((len(t),)),
            t,
            bytes((len(i),)),
            i,
            digest,
        )
    )


def compute_mac(
    key: bytes,
    *,
    seq: int,
    res_type: str,
    res_id: str,
    version: int,
    deleted: bool,
    ts_us: int,
    digest: bytes,
) -> bytes:
    message = _message(
        seq=seq,
        res_type=res_type,
        res_id=res_id,
        version=version,
        deleted=deleted,
        ts_us=ts_us,
        digest=digest,
    )
    return hmac.new(key, message, hashlib.sha256).digest()


def verify_mac(
    key: bytes,
    mac: bytes,
    *,
    seq: int,
    res_type: str,
    res_id: str,
    version: int,
    deleted: bool,
    ts_us: int,
    digest: bytes,
) -> None:
    """Raise ``IntegrityError`` unless ``mac`` is right for these fields (constant-time compare)."""
    expected = compute_mac(
        key,
        seq=seq,
        res_type=res_type,
        res_id=res_id,
        version=version,
        deleted=deleted,
        ts_us=ts_us,
        digest=digest,
    )
    if not hmac.compare_digest(expected, mac):
        raise IntegrityError()


_CHAIN_PREFIX = b"hearth/audit/v1\x00"


def chain_link(key: bytes, prev: bytes, body: bytes) -> bytes:
    """``HMAC-SHA-256(key, "hearth/audit/v1" 0x00 | prev | body)``: one link of the audit chain
    (format in ``hearth.audit.entry``)."""
    return hmac.new(key, _CHAIN_PREFIX + prev + body, hashlib.sha256).digest()
