"""Hearth's backup archive format: signed manifests, encrypted segments, verification.

Pure: no I/O, no database, no cryptography library. Signing and encryption come in through
the Protocols of :mod:`hearth.backupfmt.interfaces` (implemented in ``hearth.crypto.backup``),
stored objects through :class:`ObjectSource` (every ``hearth.targets`` target is one).
The format is described in docs/design.md, "Backup format", and pinned by the JSON vectors in
``tests/vectors/backup/``.
"""

from hearth.backupfmt.canonical import canonical_bytes, parse_json_strict
from hearth.backupfmt.interfaces import (
    ManifestSigner,
    ManifestVerifier,
    ObjectSource,
    Readable,
    SegmentDecryptor,
    SegmentEncryptor,
    SegmentSpool,
    Writable,
)
from hearth.backupfmt.manifest import (
    FORMAT,
    VERSION,
    BackupKind,
    Manifest,
    MerkleSummary,
    PreviousLink,
    SequenceRange,
    SignedManifest,
    open_manifest,
    parse_manifest,
    sign_manifest,
)
from hearth.backupfmt.memory import MemoryObjects, MemorySpool
from hearth.backupfmt.merkle import MerkleBuilder, leaf_hash, node_hash, rfc6962_root
from hearth.backupfmt.naming import (
    manifest_object_name,
    new_backup_id,
    segment_object_name,
)
from hearth.backupfmt.recipients import (
    format_identity_file,
    format_recipients_file,
    parse_identity_file,
    parse_recipients,
)
from hearth.backupfmt.records import RecordDecoder, RecordEncoder, Row, Value
from hearth.backupfmt.segment import (
    SegmentError,
    SegmentFault,
    SegmentInfo,
    digest_stream,
    read_segment,
    write_segment,
)
from hearth.backupfmt.verify import (
    BackupReport,
    BackupVerificationError,
    ChainReport,
    Check,
    Status,
    inspect_backup,
    inspect_chain,
    verify_backup,
    verify_chain,
)
from hearth.backupfmt.writer import BackupWriter

__all__ = [
    # writing
    "BackupWriter",
    "BackupKind",
    "SequenceRange",
    "new_backup_id",
    "write_segment",
    # the manifest
    "FORMAT",
    "VERSION",
    "Manifest",
    "MerkleSummary",
    "PreviousLink",
    "SignedManifest",
    "SegmentInfo",
    "sign_manifest",
    "open_manifest",
    "parse_manifest",
    "manifest_object_name",
    "segment_object_name",
    "canonical_bytes",
    "parse_json_strict",
    # Merkle tree
    "MerkleBuilder",
    "leaf_hash",
    "node_hash",
    "rfc6962_root",
    # segments and records
    "RecordDecoder",
    "RecordEncoder",
    "Row",
    "Value",
    "SegmentError",
    "SegmentFault",
    "digest_stream",
    "read_segment",
    # verification
    "BackupReport",
    "BackupVerificationError",
    "ChainReport",
    "Check",
    "Status",
    "inspect_backup",
    "inspect_chain",
    "verify_backup",
    "verify_chain",
    # keys as text
    "format_identity_file",
    "format_recipients_file",
    "parse_identity_file",
    "parse_recipients",
    # interfaces and in-memory stand-ins
    "ManifestSigner",
    "ManifestVerifier",
    "ObjectSource",
    "Readable",
    "SegmentDecryptor",
    "SegmentEncryptor",
    "SegmentSpool",
    "Writable",
    "MemoryObjects",
    "MemorySpool",
]
