"""Replicating backups between targets without decrypting them (``hearth backup copy``).

Only ciphertext moves: the copier holds no backup identity. For each backup it

1. reads the manifest from the source and verifies its signature (and that it is the backup
   asked for, of this instance), before anything is written;
2. copies the backups its ``previous`` links lead to first, oldest first, so that the
   destination never holds an incremental it cannot restore;
3. copies each segment the destination lacks through a local temporary file (bounded memory),
   hashing it on the way: the SHA-256 and length must be the ones the signed manifest names,
   or nothing is written (``BACKUP_COPY_MISMATCH``, and ``backup.verify_failed`` is raised for
   the damaged source copy);
4. writes the manifest last: a backup appears on the destination only when all of it is
   there (the write order of ``hearth backup create``).

Targets are write-once, so a re-run copies only what is missing and a lost reply is harmless.
Where the destination is configured for it, objects get Object Lock retention until
``now + object_lock_days``; objects that already exist keep the retention they have.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.backupfmt import BackupKind, Manifest, ManifestVerifier, SegmentInfo, open_manifest
from hearth.backupfmt.naming import MANIFEST_PREFIX, SEGMENT_PREFIX, backup_id_from_manifest_name
from hearth.backupfmt.naming import manifest_object_name as manifest_name
from hearth.domain import Alarm, AlarmKind, AlarmRaiser, HearthError, IntegrityError, Severity
from hearth.domain.errors import (
    BACKUP_ARGUMENT,
    BACKUP_COPY_MISMATCH,
    BACKUP_INVALID,
    BACKUP_REGION_REFUSED,
    TARGET_OBJECT_NOT_FOUND,
)
from hearth.settings import BackupSettings

if TYPE_CHECKING:
    # Only for annotations: importing hearth.targets loads boto3 and paramiko.
    from hearth.targets import BackupTarget

__all__ = ["CopyReport", "copy_backups", "retention_until"]

_CHUNK = 1024 * 1024


@dataclass(slots=True)
class CopyReport:
    source: str
    destination: str
    copied: list[str] = field(default_factory=list)  # backups whose manifest was written now
    present: list[str] = field(default_factory=list)  # backups the destination already had
    segments_copied: int = 0
    segments_present: int = 0
    bytes_copied: int = 0
    retain_until: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "destination": self.destination,
            "copied": self.copied,
            "already_present": self.present,
            "segments_copied": self.segments_copied,
            "segments_already_present": self.segments_present,
            "bytes_copied": self.bytes_copied,
            "retain_until": None if self.retain_until is None else self.retain_until.isoformat(),
        }


def retention_until(
    policy: BackupSettings, target_name: str, target: BackupTarget, now: datetime
) -> datetime | None:
    """When new objects on ``target`` may first be deleted, or None for no retention.

    The section's ``object_lock_days`` applies to targets that support immutability and is
    skipped on those that do not; a target's own ``object_lock_days`` is a requirement, and
    writing to a target that cannot honour it fails (``TARGET_IMMUTABILITY_UNSUPPORTED``)."""
    config = policy.target(target_name)
    days = policy.lock_days(config)
    if days <= 0:
        return None
    if config.object_lock_days is None and not target.supports_immutability:
        return None
    return now + timedelta(days=days)


def _chain_order(
    source: BackupTarget, backup_id: str, verifier: ManifestVerifier
) -> list[tuple[Manifest, bytes]]:
    """``backup_id`` and its predecessors, oldest first, each authenticated."""
    chain: list[tuple[Manifest, bytes]] = []
    current: str | None = backup_id
    expected_manifest_id: str | None = None
    while current is not None:
        try:
            data = source.get_bytes(manifest_name(current))
        except HearthError as exc:
            if exc.code is TARGET_OBJECT_NOT_FOUND:
                what = "is not" if not chain else "(a previous backup in its chain) is not"
                raise HearthError(
                    BACKUP_ARGUMENT, f"Backup {current} {what} on {source.label}."
                ) from None
            raise
        try:
            manifest = open_manifest(data, verifier).manifest
        except IntegrityError:
            raise HearthError(
                BACKUP_INVALID,
                f"The manifest of {current} on {source.label} does not verify; nothing copied.",
            ) from None
        if manifest.backup_id != current:
            raise HearthError(
                BACKUP_INVALID, f"The manifest stored as {current} is another backup's."
            )
        if expected_manifest_id is not None and manifest.manifest_id != expected_manifest_id:
            raise HearthError(
                BACKUP_INVALID,
                f"Backup {current} on {source.label} is not the one its successor names.",
            )
        chain.append((manifest, data))
        link = manifest.previous
        if manifest.kind is BackupKind.FULL or link is None:
            break
        current, expected_manifest_id = link.backup_id, link.manifest_id
        if len(chain) > 100_000:
            raise HearthError(BACKUP_INVALID, "The chain of previous links does not end.")
    chain.reverse()
    return chain


def _copy_segment(
    source: BackupTarget,
    destination: BackupTarget,
    segment: SegmentInfo,
    spool: Path,
    retain_until: datetime | None,
) -> None:
    fd, name = tempfile.mkstemp(dir=spool, prefix="copy-")
    path = Path(name)
    try:
        digest = hashlib.sha256()
        length = 0
        with os.fdopen(fd, "wb") as sink, source.open_read(segment.name) as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
                length += len(chunk)
                sink.write(chunk)
        if (digest.hexdigest(), length) != (segment.sha256, segment.stored_length):
            raise HearthError(
                BACKUP_COPY_MISMATCH,
                f"Segment {segment.name} on {source.label} does not match its signed manifest "
                "(damaged or replaced); nothing was written for it. Copy from another target.",
            )
        result = destination.put_file(segment.name, path, retain_until=retain_until)
        if result.sha256 != segment.sha256:
            raise HearthError(
                BACKUP_COPY_MISMATCH, f"{destination.label} stored other bytes for {segment.name}."
            )
    finally:
        path.unlink(missing_ok=True)


def copy_backups(
    source: BackupTarget,
    destination: BackupTarget,
    verifier: ManifestVerifier,
    *,
    policy: BackupSettings,
    backup_ids: Sequence[str] | None,
    now: datetime,
    spool: Path,
    instance_id: str | None = None,
    alarms: AlarmRaiser | None = None,
    on_segment: Callable[[int], None] | None = None,
) -> CopyReport:
    """Copy ``backup_ids`` (None: every backup on ``source``) and their chains to
    ``destination``. ``on_segment`` is called with each segment's stored length (progress)."""
    if source.label == destination.label:
        raise HearthError(BACKUP_ARGUMENT, "The source and the destination are the same target.")
    if not policy.region_allowed(destination.region):
        raise HearthError(
            BACKUP_REGION_REFUSED,
            f"{destination.label} is in region {destination.region}, outside allowed_regions "
            f"{list(policy.allowed_regions)}; nothing copied.",
        )
    if backup_ids is None:
        backup_ids = sorted(
            bid
            for name in source.list_names(MANIFEST_PREFIX)
            if (bid := backup_id_from_manifest_name(name)) is not None
        )
    retain = retention_until(policy, destination.label, destination, now)
    report = CopyReport(source.label, destination.label, retain_until=retain)
    spool.mkdir(parents=True, exist_ok=True)
    done: set[str] = set()
    present: set[str] | None = None
    for requested in backup_ids:
        for manifest, data in _chain_order(source, requested, verifier):
            backup_id = manifest.backup_id
            if backup_id in done:
                continue
            done.add(backup_id)
            if instance_id is not None and manifest.instance_id != instance_id:
                raise HearthError(
                    BACKUP_INVALID,
                    f"Backup {backup_id} on {source.label} belongs to another instance.",
                )
            if destination.exists(manifest_name(backup_id)):
                report.present.append(backup_id)
                continue
            if present is None:
                present = set(destination.list_names(SEGMENT_PREFIX))
            for segment in manifest.segments:
                if segment.name in present:
                    report.segments_present += 1
                    continue
                try:
                    _copy_segment(source, destination, segment, spool, retain)
                except HearthError as exc:
                    if exc.code is BACKUP_COPY_MISMATCH and alarms is not None:
                        alarms.raise_alarm(
                            Alarm(
                                AlarmKind.BACKUP_VERIFY_FAILED,
                                Severity.CRITICAL,
                                f"backup:{backup_id}@{source.label}",
                                "A backup segment does not match its signed manifest.",
                                {"segment": segment.name, "target": source.label},
                            )
                        )
                    raise
                present.add(segment.name)
                report.segments_copied += 1
                report.bytes_copied += segment.stored_length
                if on_segment is not None:
                    on_segment(segment.stored_length)
            destination.put_bytes(manifest_name(backup_id), data, retain_until=retain)
            report.bytes_copied += len(data)
            report.copied.append(backup_id)
    return report
