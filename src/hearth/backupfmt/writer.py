"""Writing one backup: segments first, each durable under its content name, the manifest last.

Write order (the invariant a crash can rely on): every segment is encrypted into the spool and
committed under ``segments/<sha256>`` before the manifest that names it exists; the manifest is
signed only after the last segment commits, and the caller stores it last. A backup killed at
any point therefore leaves either no manifest (orphan segments, never trusted, removable) or a
complete one. Nothing is ever rewritten: segment names are content addresses, manifest names
carry a fresh backup id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from hearth.backupfmt.interfaces import ManifestSigner, SegmentEncryptor, SegmentSpool
from hearth.backupfmt.manifest import (
    BackupKind,
    Manifest,
    MerkleSummary,
    PreviousLink,
    SequenceRange,
    SignedManifest,
    sign_manifest,
)
from hearth.backupfmt.merkle import MerkleBuilder, leaf_hash
from hearth.backupfmt.segment import (
    DEFAULT_MAX_PLAINTEXT_BYTES,
    DEFAULT_ZSTD_LEVEL,
    SegmentInfo,
    write_segment,
)
from hearth.domain import HearthError
from hearth.domain.errors import BACKUP_ARGUMENT

__all__ = ["BackupWriter"]


class BackupWriter:
    """Builds one backup. ``add_table`` once per table (rows in any order, except the Merkle
    table, whose rows must come in ascending sequence); then ``finish`` signs the manifest.

    For an incremental backup pass the previous manifest: the sequence range must continue it
    and the chain's Merkle tree is extended from its peaks."""

    def __init__(
        self,
        *,
        backup_id: str,
        instance_id: str,
        created: datetime,
        kind: BackupKind,
        engine: str,
        schema_version: str,
        sequence: SequenceRange,
        previous: Manifest | None,
        encryptor: SegmentEncryptor,
        spool: SegmentSpool,
        merkle_table: str = "resource_versions",
        sequence_column: str = "seq",
        mac_column: str = "mac",
        max_segment_plaintext: int = DEFAULT_MAX_PLAINTEXT_BYTES,
        zstd_level: int = DEFAULT_ZSTD_LEVEL,
    ) -> None:
        if kind is BackupKind.INCREMENTAL:
            if previous is None:
                raise HearthError(BACKUP_ARGUMENT, "An incremental backup needs its previous.")
            if sequence.first != previous.sequence.last + 1:
                raise HearthError(BACKUP_ARGUMENT, "The sequence must continue the previous.")
        elif sequence.first != 1:
            raise HearthError(BACKUP_ARGUMENT, "A full backup starts at sequence 1.")
        if sequence.last < sequence.first - 1:
            raise HearthError(BACKUP_ARGUMENT, "The sequence range is reversed.")
        if previous is not None and (
            previous.instance_id != instance_id or previous.created >= created
        ):
            raise HearthError(BACKUP_ARGUMENT, "The previous backup is not an earlier one here.")
        if previous is not None and sequence.last < previous.sequence.last:
            raise HearthError(BACKUP_ARGUMENT, "The sequence must not go backwards.")
        self._backup_id = backup_id
        self._instance_id = instance_id
        self._created = created
        self._kind = kind
        self._engine = engine
        self._schema_version = schema_version
        self._sequence = sequence
        self._previous = previous
        self._encryptor = encryptor
        self._spool = spool
        self._merkle_table = merkle_table
        self._sequence_column = sequence_column
        self._mac_column = mac_column
        self._max = max_segment_plaintext
        self._level = zstd_level
        self._tree = MerkleBuilder()
        if kind is BackupKind.INCREMENTAL and previous is not None:
            self._chain = previous.merkle.chain_builder()
        else:
            # A full backup starts the chain: its tree is the chain's, built once.
            self._chain = self._tree
        self._row_counts: dict[str, int] = {}
        self._segments: list[SegmentInfo] = []
        self._finished = False

    def add_table(
        self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
    ) -> list[SegmentInfo]:
        """Write ``rows`` of ``table`` as one or more segments; returns their entries."""
        if self._finished or table in self._row_counts:
            raise HearthError(BACKUP_ARGUMENT, "Each table is added once, before finish.")
        on_row = None
        if table == self._merkle_table:
            try:
                s_index = list(columns).index(self._sequence_column)
                m_index = list(columns).index(self._mac_column)
            except ValueError:
                raise HearthError(
                    BACKUP_ARGUMENT, "The Merkle table lacks its sequence or MAC column."
                ) from None
            first, last = self._sequence.first, self._sequence.last
            tree, chain = self._tree, self._chain

            def on_row(row: Sequence[Any]) -> None:
                seq, mac = row[s_index], row[m_index]
                if type(seq) is not int or not first <= seq <= last or type(mac) is not bytes:
                    raise HearthError(BACKUP_ARGUMENT, "A version lies outside the range.")
                digest = leaf_hash(seq, mac)
                tree.add_hashed(seq, digest)
                if chain is not tree:
                    chain.add_hashed(seq, digest)

        iterator = iter(rows)
        written: list[SegmentInfo] = []
        exhausted = False
        while not exhausted:
            sink = self._spool.begin()
            try:
                info, exhausted = write_segment(
                    table,
                    columns,
                    iterator,
                    self._encryptor,
                    sink,
                    max_plaintext_bytes=self._max,
                    level=self._level,
                    on_row=on_row,
                )
            except BaseException:
                self._spool.abort()
                raise
            self._spool.commit(info.name, info.sha256, info.stored_length)
            written.append(info)
        self._segments.extend(written)
        self._row_counts[table] = sum(s.rows for s in written)
        return written

    def manifest(self) -> Manifest:
        previous = self._previous
        link = (
            None
            if previous is None
            else PreviousLink(backup_id=previous.backup_id, manifest_id=previous.manifest_id)
        )
        if self._merkle_table not in self._row_counts:
            raise HearthError(BACKUP_ARGUMENT, "The Merkle table was not added.")
        merkle = MerkleSummary(
            table=self._merkle_table,
            sequence_column=self._sequence_column,
            mac_column=self._mac_column,
            leaves=self._tree.leaves,
            root=self._tree.root().hex(),
            chain_leaves=self._chain.leaves,
            chain_root=self._chain.root().hex(),
            chain_peaks=tuple(p.hex() for p in self._chain.peaks),
        )
        return Manifest(
            backup_id=self._backup_id,
            instance_id=self._instance_id,
            created=self._created,
            kind=self._kind,
            engine=self._engine,
            schema_version=self._schema_version,
            sequence=self._sequence,
            previous=link,
            row_counts=dict(self._row_counts),
            merkle=merkle,
            recipients=tuple(self._encryptor.recipients),
            segments=tuple(self._segments),
        )

    def finish(self, signer: ManifestSigner) -> SignedManifest:
        """Sign the manifest. The caller stores ``to_bytes()`` at ``manifest_object_name``
        only now, after every segment has committed."""
        signed = sign_manifest(self.manifest(), signer)
        self._finished = True
        return signed
