"""Batch verification of stored resource versions: the integrity scanner's inner loop.

``check_versions`` does, for many rows at once, exactly what opening one version on the read
path does: the envelope opens under its data key with the AAD that binds type, id and version
(docs/design.md, "Envelope format"), the key id column names the key that sealed it, and the
per-version MAC (``hearth.crypto.mac``) verifies over the plaintext digest. It is written as one
tight loop over plain tuples, with every lookup hoisted out of it, because the scanner runs it
over every stored version and its cost per row is the scanner's rate.

It returns what is wrong, never raises on a damaged row: a row a hostile editor crafted (a text
value in a blob column, a truncated envelope, an unknown key id) is a finding like any other.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hearth.crypto import envelope
from hearth.crypto.mac import MAC_FIXED, MAC_PREFIX

__all__ = ["VersionProblem", "check_versions"]

_ENVELOPE = envelope.ENVELOPE_V1[0]
_HEADER = 5  # version byte and key id
_OPENED = _HEADER + envelope.NONCE_BYTES
_MIN_BLOB = _OPENED + 16
_AAD = b"hearth/resource/v1\x00%s\x00%s\x00%d"
_EMPTY_DIGEST = hashlib.sha256(b"").digest()


class VersionProblem(enum.StrEnum):
    """What is wrong with one stored version (the scanner words each for the operator)."""

    SEAL = "seal"  # the body does not open under its AAD (edited body, id, type, version)
    KEY_ID = "key-id"  # the key_id column disagrees with the key that sealed the body
    TOMBSTONE_BODY = "tombstone-body"  # a deletion carries a body or a key id
    MAC = "mac"  # the MAC does not verify (edited MAC, time, deletion flag, sequence)
    UNREADABLE = "unreadable"  # a column holds something no writer stores


#: One stored version as the database driver returns it: ``(seq, res_type, res_id, version,
#: ts_us, deleted, key_id, body, mac_key_id, mac)``.
VersionTuple = Sequence[Any]


def check_versions(
    rows: Iterable[VersionTuple],
    *,
    aead: Mapping[int, AESGCM],
    macs: Mapping[int, bytes],
    keep: AbstractSet[int] = frozenset(),
    on_unknown_key: Callable[[], tuple[Mapping[int, AESGCM], Mapping[int, bytes]]] | None = None,
) -> tuple[list[tuple[int, VersionProblem]], dict[int, bytes]]:
    """Check every row; returns ``(problems, bodies)``: ``(seq, problem)`` for each damaged row,
    and the opened plaintext of the rows whose ``seq`` is in ``keep`` and that verified.

    ``aead`` maps data key ids to their AES-GCM keys and ``macs`` MAC key ids to MAC keys.
    ``on_unknown_key`` is called at most once, when a row names a key id neither map holds
    (another process may have rotated keys), and returns fresh maps.
    """
    problems: list[tuple[int, VersionProblem]] = []
    bodies: dict[int, bytes] = {}
    sha256 = hashlib.sha256
    hmac_digest = hmac.digest
    same = hmac.compare_digest
    pack = MAC_FIXED.pack
    aad_format = _AAD
    asked = on_unknown_key is None
    for row in rows:
        seq = row[0]
        try:
            seq, res_type, res_id, version, ts_us, deleted, key_id, body, mac_key_id, tag = row
            t = res_type.encode("ascii")
            i = res_id.encode("ascii")
            if deleted:
                if body is not None or key_id is not None:
                    problems.append((seq, VersionProblem.TOMBSTONE_BODY))
                    continue
                digest = _EMPTY_DIGEST
                plain = None
            else:
                if (
                    body is None
                    or len(body) < _MIN_BLOB
                    or body[0] != _ENVELOPE
                    or type(body) is not bytes
                ):
                    problems.append((seq, VersionProblem.SEAL))
                    continue
                sealed_by = int.from_bytes(body[1:_HEADER], "big")
                key = aead.get(sealed_by)
                if key is None and not asked:
                    asked = True
                    aead, macs = on_unknown_key()  # type: ignore[misc]
                    key = aead.get(sealed_by)
                if key is None:
                    problems.append((seq, VersionProblem.SEAL))
                    continue
                try:
                    plain = key.decrypt(
                        body[_HEADER:_OPENED],
                        body[_OPENED:],
                        body[:_HEADER] + aad_format % (t, i, version),
                    )
                except InvalidTag:
                    problems.append((seq, VersionProblem.SEAL))
                    continue
                if key_id != sealed_by:
                    problems.append((seq, VersionProblem.KEY_ID))
                    continue
                digest = sha256(plain).digest()
            mac_key = macs.get(mac_key_id)
            if mac_key is None and not asked:
                asked = True
                aead, macs = on_unknown_key()  # type: ignore[misc]
                mac_key = macs.get(mac_key_id)
            if mac_key is None or type(tag) is not bytes:
                problems.append((seq, VersionProblem.MAC))
                continue
            message = b"".join(
                (
                    MAC_PREFIX,
                    pack(seq, version, 1 if deleted else 0, ts_us),
                    bytes((len(t),)),
                    t,
                    bytes((len(i),)),
                    i,
                    digest,
                )
            )
            if not same(hmac_digest(mac_key, message, "sha256"), tag):
                problems.append((seq, VersionProblem.MAC))
                continue
            if plain is not None and seq in keep:
                bodies[seq] = plain
        except Exception:  # noqa: BLE001 - a hostile row must not stop the scan
            problems.append((seq, VersionProblem.UNREADABLE))
    return problems, bodies
