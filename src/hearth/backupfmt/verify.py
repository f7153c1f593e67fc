"""Verifying backups from their stored objects alone: one backup, or the whole chain.

What is checked, per backup: the manifest parses (format, version, canonical form), its Ed25519
signature, that it sits under its own name (``manifests/<backup_id>.json``), its internal
consistency (segment names are content addresses, row counts add up, Merkle peaks give the
chain root), every segment's presence, length and SHA-256; with a backup identity also every
AEAD tag, the record framing, counts, and the Merkle root recomputed from the decrypted
(sequence, MAC) pairs. Per chain: each ``previous`` link names the stored predecessor's
manifest id, sequence ranges are contiguous, times and ids increase, there is no fork, and the
head is the expected one when the caller knows it (a rollback to an older, genuine manifest is
otherwise indistinguishable from "no newer backup yet").

``inspect_*`` return structured reports; ``verify_*`` raise :class:`BackupVerificationError`
carrying the report (pyca's "verification raises" rule).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hearth.backupfmt.interfaces import ManifestVerifier, ObjectSource, SegmentDecryptor
from hearth.backupfmt.manifest import BackupKind, Manifest, open_manifest
from hearth.backupfmt.merkle import MerkleBuilder
from hearth.backupfmt.naming import (
    MANIFEST_PREFIX,
    backup_id_from_manifest_name,
    manifest_object_name,
    segment_object_name,
)
from hearth.backupfmt.records import Row
from hearth.backupfmt.segment import SegmentError, SegmentFault, digest_stream, read_segment
from hearth.domain import HearthError, IntegrityError
from hearth.domain.errors import BACKUP_ARGUMENT, BACKUP_INVALID, TARGET_OBJECT_NOT_FOUND

__all__ = [
    "BackupReport",
    "BackupVerificationError",
    "ChainReport",
    "Check",
    "Status",
    "inspect_backup",
    "inspect_chain",
    "verify_backup",
    "verify_chain",
]


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class Check:
    """One verification step: ``check`` is a stable name (``segment.hash``), ``subject`` the
    object it concerns (an object name), ``detail`` a reason that never holds PHI."""

    check: str
    subject: str
    status: Status
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "check": self.check,
            "subject": self.subject,
            "status": self.status.value,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class BackupReport:
    name: str
    manifest: Manifest | None
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(c.status is not Status.FAILED for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if c.status is Status.FAILED)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backup_id": self.manifest.backup_id if self.manifest else None,
            "manifest_id": self.manifest.manifest_id if self.manifest else None,
            "ok": self.ok,
            "checks": [c.to_json() for c in self.checks],
        }


@dataclass(frozen=True)
class ChainReport:
    backups: tuple[BackupReport, ...]
    checks: tuple[Check, ...]
    head: str | None

    @property
    def ok(self) -> bool:
        return all(b.ok for b in self.backups) and all(
            c.status is not Status.FAILED for c in self.checks
        )

    @property
    def failures(self) -> tuple[Check, ...]:
        own = tuple(c for c in self.checks if c.status is Status.FAILED)
        return own + tuple(f for b in self.backups for f in b.failures)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "head": self.head,
            "checks": [c.to_json() for c in self.checks],
            "backups": [b.to_json() for b in self.backups],
        }


class BackupVerificationError(HearthError):
    """A backup or chain failed verification; ``report`` says which checks and objects."""

    def __init__(self, report: BackupReport | ChainReport) -> None:
        first = report.failures[0] if report.failures else None
        detail = "The backup failed verification"
        if first is not None:
            detail += f": {first.check} on {first.subject}"
        super().__init__(BACKUP_INVALID, detail + ".")
        self.report = report


def _consistency(manifest: Manifest) -> list[str]:
    problems: list[str] = []
    names = [s.name for s in manifest.segments]
    if len(set(names)) != len(names):
        problems.append("a segment is listed twice")
    totals: dict[str, int] = {}
    for seg in manifest.segments:
        if seg.name != segment_object_name(seg.sha256):
            problems.append(f"segment {seg.name} is not named by its digest")
        totals[seg.table] = totals.get(seg.table, 0) + seg.rows
    if totals != dict(manifest.row_counts):
        problems.append("row counts differ from the segments' rows")
    if set(manifest.row_counts) != {s.table for s in manifest.segments}:
        problems.append("a table has no segment")
    merkle = manifest.merkle
    if manifest.row_counts.get(merkle.table) != merkle.leaves:
        problems.append("the Merkle leaf count differs from the versions' row count")
    if merkle.leaves > manifest.sequence.last - manifest.sequence.first + 1:
        problems.append("more Merkle leaves than sequence numbers")
    try:
        chain_root = merkle.chain_builder().root().hex()
    except HearthError:
        problems.append("the Merkle chain peaks do not fit the leaf count")
    else:
        if chain_root != merkle.chain_root:
            problems.append("the Merkle chain peaks do not give the chain root")
    if manifest.kind is BackupKind.FULL:
        if manifest.sequence.first != 1:
            problems.append("a full backup does not start at sequence 1")
        if (merkle.chain_leaves, merkle.chain_root) != (merkle.leaves, merkle.root):
            problems.append("a full backup's chain tree differs from its own tree")
    else:
        if manifest.previous is None:
            problems.append("an incremental backup has no previous backup")
        if merkle.chain_leaves < merkle.leaves:
            problems.append("the chain has fewer leaves than the backup")
    return problems


class _LeafCollector:
    """Feeds decrypted (sequence, MAC) pairs to the backup's tree and the chain's tree."""

    def __init__(self, manifest: Manifest, previous: Manifest | None) -> None:
        self.merkle = manifest.merkle
        self.tree = MerkleBuilder()
        self.chain: MerkleBuilder | None = None
        if manifest.kind is BackupKind.FULL:
            self.chain = MerkleBuilder()
        elif previous is not None:
            self.chain = previous.merkle.chain_builder()
        self.first = manifest.sequence.first
        self.last = manifest.sequence.last
        self.problem: str | None = None

    def __call__(self, table: str, columns: tuple[str, ...], rows: list[Row]) -> None:
        if table != self.merkle.table or self.problem is not None:
            return
        try:
            s_index = columns.index(self.merkle.sequence_column)
            m_index = columns.index(self.merkle.mac_column)
        except ValueError:
            self.problem = "the versions table lacks its sequence or MAC column"
            return
        for row in rows:
            seq, mac = row[s_index], row[m_index]
            if type(seq) is not int or type(mac) is not bytes or not self.first <= seq <= self.last:
                self.problem = "a version lies outside the backup's sequence range"
                return
            try:
                self.tree.add(seq, mac)
                if self.chain is not None:
                    self.chain.add(seq, mac)
            except HearthError:
                self.problem = "versions are not in ascending sequence order"
                return


def _inspect(
    objects: ObjectSource,
    name: str,
    verifier: ManifestVerifier,
    *,
    decryptor: SegmentDecryptor | None,
    previous: Manifest | None,
    read_segments: bool,
) -> BackupReport:
    checks: list[Check] = []

    def add(check: str, subject: str, status: Status, detail: str = "") -> None:
        checks.append(Check(check, subject, status, detail))

    try:
        data = objects.get_bytes(name)
    except HearthError as exc:
        if exc.code is not TARGET_OBJECT_NOT_FOUND:
            raise
        add("manifest.present", name, Status.FAILED, "the manifest object is missing")
        return BackupReport(name, None, tuple(checks))
    try:
        signed = open_manifest(data, verifier)
    except IntegrityError:
        add("manifest.signature", name, Status.FAILED, "the signature does not verify")
        return BackupReport(name, None, tuple(checks))
    except HearthError as exc:
        add("manifest.format", name, Status.FAILED, exc.detail)
        return BackupReport(name, None, tuple(checks))
    manifest = signed.manifest
    add("manifest.signature", name, Status.OK, f"key {signed.key_id}")
    if manifest_object_name(manifest.backup_id) == name:
        add("manifest.name", name, Status.OK)
    else:
        add("manifest.name", name, Status.FAILED, "the manifest belongs to another name")
    problems = _consistency(manifest)
    add(
        "manifest.consistency",
        name,
        Status.FAILED if problems else Status.OK,
        "; ".join(problems),
    )
    if not read_segments:
        return BackupReport(name, manifest, tuple(checks))
    leaves = _LeafCollector(manifest, previous)
    segments_ok = True
    for seg in manifest.segments:
        try:
            with objects.open_read(seg.name) as stream:
                if decryptor is None:
                    sha, length = digest_stream(stream)
                    if (sha, length) != (seg.sha256, seg.stored_length):
                        raise SegmentError(SegmentFault.HASH, seg.name)
                else:
                    read_segment(stream, seg, decryptor, leaves)
        except SegmentError as exc:
            segments_ok = False
            add(f"segment.{exc.fault.value}", seg.name, Status.FAILED, exc.detail)
        except HearthError as exc:
            if exc.code is not TARGET_OBJECT_NOT_FOUND:
                raise
            segments_ok = False
            add("segment.present", seg.name, Status.FAILED, "the segment object is missing")
        else:
            add("segment.hash", seg.name, Status.OK)
            if decryptor is not None:
                add("segment.decrypt", seg.name, Status.OK)
    if decryptor is None:
        add("merkle.root", name, Status.SKIPPED, "needs a backup identity to read versions")
    elif not segments_ok:
        add("merkle.root", name, Status.SKIPPED, "a segment could not be read")
    else:
        _merkle_checks(manifest, leaves, add)
    return BackupReport(name, manifest, tuple(checks))


def _merkle_checks(
    manifest: Manifest, leaves: _LeafCollector, add: Callable[[str, str, Status, str], None]
) -> None:
    name = manifest_object_name(manifest.backup_id)
    merkle = manifest.merkle
    if leaves.problem is not None:
        add("merkle.root", name, Status.FAILED, leaves.problem)
        return
    if (leaves.tree.leaves, leaves.tree.root().hex()) == (merkle.leaves, merkle.root):
        add("merkle.root", name, Status.OK, f"{merkle.leaves} versions")
    else:
        add("merkle.root", name, Status.FAILED, "the recomputed root differs")
    if leaves.chain is None:
        add("merkle.chain", name, Status.SKIPPED, "the previous backup was not available")
        return
    chain = (
        leaves.chain.leaves,
        leaves.chain.root().hex(),
        tuple(p.hex() for p in leaves.chain.peaks),
    )
    if chain == (merkle.chain_leaves, merkle.chain_root, merkle.chain_peaks):
        add("merkle.chain", name, Status.OK, "")
    else:
        add("merkle.chain", name, Status.FAILED, "the chain root does not extend the previous")


def inspect_backup(
    objects: ObjectSource,
    backup_id: str,
    verifier: ManifestVerifier,
    *,
    decryptor: SegmentDecryptor | None = None,
    previous: Manifest | None = None,
    read_segments: bool = True,
) -> BackupReport:
    """Check one backup and report every step. With ``decryptor`` (the operator's identity)
    segments are decrypted and the Merkle root recomputed; with ``previous`` (its verified
    predecessor) the chain root is checked too."""
    return _inspect(
        objects,
        manifest_object_name(backup_id),
        verifier,
        decryptor=decryptor,
        previous=previous,
        read_segments=read_segments,
    )


def verify_backup(
    objects: ObjectSource,
    backup_id: str,
    verifier: ManifestVerifier,
    *,
    decryptor: SegmentDecryptor | None = None,
    previous: Manifest | None = None,
) -> Manifest:
    """Like :func:`inspect_backup` but raise :class:`BackupVerificationError` on any failure."""
    report = inspect_backup(objects, backup_id, verifier, decryptor=decryptor, previous=previous)
    if not report.ok or report.manifest is None:
        raise BackupVerificationError(report)
    return report.manifest


def _link_checks(manifest: Manifest, previous: Manifest | None) -> list[tuple[str, Status, str]]:
    link = manifest.previous
    if link is None:
        return [("chain.link", Status.OK, "starts a chain")]
    if previous is None:
        if manifest.kind is BackupKind.FULL:
            detail = "the previous backup is gone (pruned); this full backup stands alone"
            return [("chain.link", Status.SKIPPED, detail)]
        detail = "the previous backup is missing or unreadable; this incremental cannot restore"
        return [("chain.link", Status.FAILED, detail)]
    out: list[tuple[str, Status, str]] = []
    if previous.manifest_id != link.manifest_id or previous.backup_id != link.backup_id:
        out.append(("chain.link", Status.FAILED, "the previous manifest is not the one named"))
        return out
    out.append(("chain.link", Status.OK, ""))
    ordered = previous.created < manifest.created and previous.backup_id < manifest.backup_id
    out.append(("chain.order", Status.OK if ordered else Status.FAILED, ""))
    contiguous = manifest.sequence.last >= previous.sequence.last and (
        manifest.kind is BackupKind.FULL or manifest.sequence.first == previous.sequence.last + 1
    )
    out.append(("chain.sequence", Status.OK if contiguous else Status.FAILED, ""))
    if manifest.kind is BackupKind.INCREMENTAL:
        extends = (
            manifest.merkle.chain_leaves == previous.merkle.chain_leaves + manifest.merkle.leaves
        )
        out.append(("chain.merkle", Status.OK if extends else Status.FAILED, ""))
    same = previous.instance_id == manifest.instance_id
    out.append(("chain.instance", Status.OK if same else Status.FAILED, ""))
    return out


def inspect_chain(
    objects: ObjectSource,
    verifier: ManifestVerifier,
    *,
    decryptor: SegmentDecryptor | None = None,
    expected_head: str | None = None,
    instance_id: str | None = None,
    read_segments: bool = True,
) -> ChainReport:
    """Check every backup under ``manifests/`` and the links between them.

    ``expected_head`` is the backup id (or manifest id) of the newest backup the caller knows
    of, from state kept apart from the target; a head that differs is a rollback or replay."""
    checks: list[Check] = []
    names: list[str] = []
    for name in objects.list_names(MANIFEST_PREFIX):
        if backup_id_from_manifest_name(name) is None:
            checks.append(Check("chain.names", name, Status.FAILED, "not a manifest name"))
        else:
            names.append(name)
    names.sort()
    # First pass: read and authenticate manifests only (cheap), to learn the links.
    first: dict[str, BackupReport] = {
        name: _inspect(objects, name, verifier, decryptor=None, previous=None, read_segments=False)
        for name in names
    }
    # Links are followed between authentic manifests that sit under their own names; one that
    # is authentic but inconsistent still takes part, so that its chain faults are reported too.
    trusted: dict[str, Manifest] = {}
    for name, report in first.items():
        manifest = report.manifest
        if manifest is not None and manifest_object_name(manifest.backup_id) == name:
            trusted[manifest.backup_id] = manifest
    claimed: dict[str, list[str]] = {}
    for manifest in trusted.values():
        if manifest.previous is not None:
            claimed.setdefault(manifest.previous.backup_id, []).append(manifest.backup_id)
    for prev_id, successors in sorted(claimed.items()):
        if len(successors) > 1:
            checks.append(
                Check(
                    "chain.fork",
                    manifest_object_name(prev_id),
                    Status.FAILED,
                    "more than one backup names it as previous: " + ", ".join(sorted(successors)),
                )
            )
    heads = sorted(b for b in trusted if b not in claimed)
    head = heads[-1] if heads else None
    if instance_id is not None:
        for manifest in trusted.values():
            if manifest.instance_id != instance_id:
                checks.append(
                    Check(
                        "chain.instance",
                        manifest_object_name(manifest.backup_id),
                        Status.FAILED,
                        "the backup belongs to another instance",
                    )
                )
    if expected_head is not None:
        head_manifest = trusted.get(head) if head else None
        matches = head_manifest is not None and expected_head in (
            head_manifest.backup_id,
            head_manifest.manifest_id,
        )
        checks.append(
            Check(
                "chain.head",
                manifest_object_name(head) if head else MANIFEST_PREFIX,
                Status.OK if matches else Status.FAILED,
                "" if matches else "the newest backup is not the one expected (rollback?)",
            )
        )
    reports: list[BackupReport] = []
    for name in names:
        report = first[name]
        manifest = report.manifest
        if manifest is None or trusted.get(manifest.backup_id) is not manifest:
            reports.append(report)
            continue
        previous = trusted.get(manifest.previous.backup_id) if manifest.previous else None
        extra = [
            Check(check, name, status, detail)
            for check, status, detail in _link_checks(manifest, previous)
        ]
        if read_segments:
            linked = previous if extra and extra[0].status is Status.OK else None
            report = _inspect(
                objects,
                name,
                verifier,
                decryptor=decryptor,
                previous=linked,
                read_segments=True,
            )
        reports.append(BackupReport(name, report.manifest, report.checks + tuple(extra)))
    return ChainReport(tuple(reports), tuple(checks), head)


def verify_chain(
    objects: ObjectSource,
    verifier: ManifestVerifier,
    *,
    decryptor: SegmentDecryptor | None = None,
    expected_head: str | None = None,
    instance_id: str | None = None,
) -> ChainReport:
    """Like :func:`inspect_chain` but raise :class:`BackupVerificationError` on any failure."""
    report = inspect_chain(
        objects,
        verifier,
        decryptor=decryptor,
        expected_head=expected_head,
        instance_id=instance_id,
    )
    if not report.ok:
        raise BackupVerificationError(report)
    if not report.backups:
        raise HearthError(BACKUP_ARGUMENT, "There is no backup to verify.")
    return report
