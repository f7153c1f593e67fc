"""The signed backup manifest, format ``hearth-backup`` version 1.

The body is a JSON object (field list in docs/design.md, "Backup format"); it is serialised
canonically (:mod:`hearth.backupfmt.canonical`) and signed with Ed25519 (RFC 8032) over::

    "hearth-backup/manifest/v1" 0x00 || canonical(body)

The **manifest id** is the SHA-256 (hex) of ``canonical(body)``. The next backup names it in
``previous.manifest_id``, which chains backups the way a hash chain does: replacing, replaying
or reordering a manifest breaks a link. The stored object is the canonical JSON of
``{"manifest": body, "signature": {"algorithm": "ed25519", "key_id": ..., "value": base64}}``.

Parsing fails closed: unknown fields, a missing field, an unknown format or version, floats or
duplicate keys are all refused before any signature is checked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from hearth.backupfmt.canonical import canonical_bytes, parse_json_strict
from hearth.backupfmt.interfaces import ManifestSigner, ManifestVerifier
from hearth.backupfmt.merkle import CONSTRUCTION, LEAF_CONTEXT, MerkleBuilder
from hearth.backupfmt.naming import BACKUP_ID_PATTERN, SHA256_HEX_PATTERN
from hearth.backupfmt.segment import SegmentInfo
from hearth.domain import HearthError, IntegrityError
from hearth.domain.errors import BACKUP_FORMAT

__all__ = [
    "FORMAT",
    "SEGMENT_ENCODING",
    "SIGNATURE_CONTEXT",
    "VERSION",
    "BackupKind",
    "Manifest",
    "MerkleSummary",
    "PreviousLink",
    "SequenceRange",
    "SignedManifest",
    "format_time",
    "open_manifest",
    "parse_manifest",
    "sign_manifest",
]

FORMAT = "hearth-backup"
VERSION = 1
SIGNATURE_CONTEXT = b"hearth-backup/manifest/v1\x00"
SIGNATURE_ALGORITHM = "ed25519"
SEGMENT_ENCODING: Mapping[str, str] = {
    "records": "hearth-segment-v1",
    "compression": "zstd",
    "encryption": "age-v1",
}
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_NAME = re.compile(r"[A-Za-z0-9_]{1,128}")
_TEXT = re.compile(r"[A-Za-z0-9_.:+@/-]{1,128}")
_KEY_ID = re.compile(r"[0-9a-f]{32}")
_RECIPIENT = re.compile(r"age1[02-9ac-hj-np-z]{58}")


class BackupKind(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds and ``Z``: one spelling per instant, so it signs stably."""
    if moment.tzinfo is None:
        raise HearthError(BACKUP_FORMAT, "Backup times are timezone-aware.")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: object) -> datetime:
    if not isinstance(text, str) or not _TIME.fullmatch(text):
        raise HearthError(BACKUP_FORMAT, "A manifest time is malformed.")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        raise HearthError(BACKUP_FORMAT, "A manifest time is not a valid date.") from None


@dataclass(frozen=True, slots=True)
class SequenceRange:
    """Resource-version sequence numbers ``first`` to ``last`` inclusive (``"from"``/``"to"``);
    empty when ``last == first - 1``."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class PreviousLink:
    backup_id: str
    manifest_id: str


@dataclass(frozen=True, slots=True)
class MerkleSummary:
    """Root over this backup's leaves, and over the whole chain since its full backup."""

    table: str
    sequence_column: str
    mac_column: str
    leaves: int
    root: str
    chain_leaves: int
    chain_root: str
    chain_peaks: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "construction": CONSTRUCTION,
            "leaf": LEAF_CONTEXT.decode("ascii"),
            "table": self.table,
            "sequence_column": self.sequence_column,
            "mac_column": self.mac_column,
            "leaves": self.leaves,
            "root": self.root,
            "chain": {
                "leaves": self.chain_leaves,
                "root": self.chain_root,
                "peaks": list(self.chain_peaks),
            },
        }

    def chain_builder(self) -> MerkleBuilder:
        return MerkleBuilder.resume(self.chain_leaves, [bytes.fromhex(p) for p in self.chain_peaks])


@dataclass(frozen=True)
class Manifest:
    backup_id: str
    instance_id: str
    created: datetime
    kind: BackupKind
    engine: str
    schema_version: str
    sequence: SequenceRange
    previous: PreviousLink | None
    row_counts: Mapping[str, int]
    merkle: MerkleSummary
    recipients: tuple[str, ...]
    segments: tuple[SegmentInfo, ...]
    _canonical: bytes = field(default=b"", init=False, repr=False, compare=False)

    def body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "backup_id": self.backup_id,
            "instance_id": self.instance_id,
            "created": format_time(self.created),
            "kind": self.kind.value,
            "engine": self.engine,
            "schema_version": self.schema_version,
            "sequence": {"from": self.sequence.first, "to": self.sequence.last},
            "previous": None
            if self.previous is None
            else {
                "backup_id": self.previous.backup_id,
                "manifest_id": self.previous.manifest_id,
            },
            "row_counts": dict(self.row_counts),
            "merkle": self.merkle.to_json(),
            "segment_encoding": dict(SEGMENT_ENCODING),
            "recipients": list(self.recipients),
            "segments": [s.to_json() for s in self.segments],
        }

    def canonical(self) -> bytes:
        if not self._canonical:
            object.__setattr__(self, "_canonical", canonical_bytes(self.body()))
        return self._canonical

    @property
    def manifest_id(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    def signing_message(self) -> bytes:
        return SIGNATURE_CONTEXT + self.canonical()


@dataclass(frozen=True)
class SignedManifest:
    manifest: Manifest
    key_id: str
    signature: bytes

    def to_bytes(self) -> bytes:
        return canonical_bytes(
            {
                "manifest": self.manifest.body(),
                "signature": {
                    "algorithm": SIGNATURE_ALGORITHM,
                    "key_id": self.key_id,
                    "value": base64.b64encode(self.signature).decode("ascii"),
                },
            }
        )


def sign_manifest(manifest: Manifest, signer: ManifestSigner) -> SignedManifest:
    # Parse our own output back so that a writer can never sign what a reader would refuse.
    parse_manifest(canonical_bytes({"manifest": manifest.body(), "signature": _DUMMY_SIG}))
    return SignedManifest(manifest, signer.key_id, signer.sign(manifest.signing_message()))


_DUMMY_SIG = {"algorithm": SIGNATURE_ALGORITHM, "key_id": "0" * 32, "value": ""}


def _obj(value: object, keys: set[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != keys:
        raise HearthError(BACKUP_FORMAT, f"The manifest's {what} is malformed.")
    return value


def _int(value: object, what: str, minimum: int = 0) -> int:
    if type(value) is not int or value < minimum or value >= 2**63:
        raise HearthError(BACKUP_FORMAT, f"The manifest's {what} is not a valid integer.")
    return value


def _str(value: object, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise HearthError(BACKUP_FORMAT, f"The manifest's {what} is malformed.")
    return value


_BODY_KEYS = {
    "format", "version", "backup_id", "instance_id", "created", "kind", "engine",
    "schema_version", "sequence", "previous", "row_counts", "merkle", "segment_encoding",
    "recipients", "segments",
}  # fmt: skip
_MERKLE_KEYS = {
    "construction", "leaf", "table", "sequence_column", "mac_column", "leaves", "root", "chain",
}  # fmt: skip


def _manifest_from_body(body: object) -> Manifest:
    if not isinstance(body, dict):
        raise HearthError(BACKUP_FORMAT, "The manifest body is not an object.")
    if body.get("format") != FORMAT or body.get("version") != VERSION:
        raise HearthError(BACKUP_FORMAT, "Not a hearth-backup version 1 manifest.")
    body = _obj(body, _BODY_KEYS, "body")
    kind_text = body["kind"]
    if kind_text not in ("full", "incremental"):
        raise HearthError(BACKUP_FORMAT, "The manifest's kind is unknown.")
    seq = _obj(body["sequence"], {"from", "to"}, "sequence")
    sequence = SequenceRange(_int(seq["from"], "sequence", 1), _int(seq["to"], "sequence"))
    if sequence.last < sequence.first - 1:
        raise HearthError(BACKUP_FORMAT, "The manifest's sequence range is reversed.")
    previous: PreviousLink | None = None
    if body["previous"] is not None:
        prev = _obj(body["previous"], {"backup_id", "manifest_id"}, "previous link")
        previous = PreviousLink(
            _str(prev["backup_id"], BACKUP_ID_PATTERN, "previous backup id"),
            _str(prev["manifest_id"], SHA256_HEX_PATTERN, "previous manifest id"),
        )
    counts = body["row_counts"]
    if not isinstance(counts, dict):
        raise HearthError(BACKUP_FORMAT, "The manifest's row counts are malformed.")
    row_counts = {_str(k, _NAME, "table name"): _int(v, "row count") for k, v in counts.items()}
    merkle_obj = _obj(body["merkle"], _MERKLE_KEYS, "merkle summary")
    if merkle_obj["construction"] != CONSTRUCTION or merkle_obj["leaf"] != LEAF_CONTEXT.decode():
        raise HearthError(BACKUP_FORMAT, "The manifest's Merkle construction is unknown.")
    chain = _obj(merkle_obj["chain"], {"leaves", "root", "peaks"}, "Merkle chain")
    if not isinstance(chain["peaks"], list):
        raise HearthError(BACKUP_FORMAT, "The manifest's Merkle peaks are malformed.")
    merkle = MerkleSummary(
        table=_str(merkle_obj["table"], _NAME, "Merkle table"),
        sequence_column=_str(merkle_obj["sequence_column"], _NAME, "Merkle column"),
        mac_column=_str(merkle_obj["mac_column"], _NAME, "Merkle column"),
        leaves=_int(merkle_obj["leaves"], "Merkle leaf count"),
        root=_str(merkle_obj["root"], SHA256_HEX_PATTERN, "Merkle root"),
        chain_leaves=_int(chain["leaves"], "Merkle leaf count"),
        chain_root=_str(chain["root"], SHA256_HEX_PATTERN, "Merkle root"),
        chain_peaks=tuple(_str(p, SHA256_HEX_PATTERN, "Merkle peak") for p in chain["peaks"]),
    )
    if body["segment_encoding"] != dict(SEGMENT_ENCODING):
        raise HearthError(BACKUP_FORMAT, "The manifest's segment encoding is unknown.")
    recipients = body["recipients"]
    if not isinstance(recipients, list) or not recipients:
        raise HearthError(BACKUP_FORMAT, "The manifest names no recipients.")
    segments = body["segments"]
    if not isinstance(segments, list):
        raise HearthError(BACKUP_FORMAT, "The manifest's segment list is malformed.")
    return Manifest(
        backup_id=_str(body["backup_id"], BACKUP_ID_PATTERN, "backup id"),
        instance_id=_str(body["instance_id"], _TEXT, "instance id"),
        created=_parse_time(body["created"]),
        kind=BackupKind(kind_text),
        engine=_str(body["engine"], _NAME, "engine"),
        schema_version=_str(body["schema_version"], _TEXT, "schema version"),
        sequence=sequence,
        previous=previous,
        row_counts=row_counts,
        merkle=merkle,
        recipients=tuple(_str(r, _RECIPIENT, "recipient") for r in recipients),
        segments=tuple(SegmentInfo.from_json(s) for s in segments),
    )


def parse_manifest(data: bytes) -> SignedManifest:
    """Parse a stored manifest object WITHOUT checking its signature: use :func:`open_manifest`
    for anything that will be trusted. The stored bytes must be canonical, so no bit of them
    can change without changing what is parsed."""
    outer = _obj(parse_json_strict(data), {"manifest", "signature"}, "envelope")
    if canonical_bytes(outer) != data:
        raise HearthError(BACKUP_FORMAT, "The manifest object is not in canonical form.")
    sig = _obj(outer["signature"], {"algorithm", "key_id", "value"}, "signature")
    if sig["algorithm"] != SIGNATURE_ALGORITHM:
        raise HearthError(BACKUP_FORMAT, "The manifest's signature algorithm is unknown.")
    key_id = _str(sig["key_id"], _KEY_ID, "signing key id")
    text = sig["value"]
    try:
        signature = base64.b64decode(str(text).encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise HearthError(BACKUP_FORMAT, "The manifest's signature is malformed.") from None
    # Base64 has spare bits in its last character; only the canonical spelling is accepted.
    if base64.b64encode(signature).decode("ascii") != text:
        raise HearthError(BACKUP_FORMAT, "The manifest's signature is not canonical base64.")
    manifest = _manifest_from_body(outer["manifest"])
    if canonical_bytes(outer["manifest"]) != manifest.canonical():
        # Every field was read back; a difference means something was not representable.
        raise HearthError(BACKUP_FORMAT, "The manifest body is not in canonical form.")
    return SignedManifest(manifest, key_id, signature)


def open_manifest(data: bytes, verifier: ManifestVerifier) -> SignedManifest:
    """Parse a stored manifest and verify its Ed25519 signature; raise on any failure
    (``BACKUP_FORMAT`` for a malformed object, ``IntegrityError`` for a bad signature)."""
    signed = parse_manifest(data)
    try:
        verifier.verify(signed.key_id, signed.signature, signed.manifest.signing_message())
    except IntegrityError:
        raise
    except HearthError:
        raise IntegrityError("The manifest signature did not verify.") from None
    return signed
