"""What every backup target holds: authenticated manifests, their segments, and which copies
are complete and restorable. The common ground of the copy policy, ``copy``, ``prune`` and
scheduled verification (docs/design.md, "Backup operations").

A **copy** of a backup on a target is its manifest (signature verified, under its own name)
plus every segment it names. A copy is **complete** when all those objects are present (by
name: segment names are content addresses, and hashes are what verification reads) and
**restorable** when, in addition, every backup its ``previous`` links lead to, back to a full
backup, has a complete copy on the same target. Listing costs one LIST per prefix and one GET
per manifest; no segment is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from hearth.backupfmt import BackupKind, Manifest, ManifestVerifier, open_manifest
from hearth.backupfmt.naming import (
    MANIFEST_PREFIX,
    SEGMENT_PREFIX,
    backup_id_from_manifest_name,
    manifest_object_name,
)
from hearth.domain import HearthError, IntegrityError

if TYPE_CHECKING:
    # Only for annotations: importing hearth.targets loads boto3 and paramiko.
    from hearth.targets import BackupTarget

__all__ = ["Inventory", "StoredCopy", "TargetListing", "survey", "survey_target"]


@dataclass(frozen=True, slots=True)
class StoredCopy:
    """One backup as found on one target."""

    target: str
    backup_id: str
    manifest: Manifest | None  # None: the manifest did not authenticate
    problem: str | None = None
    missing_segments: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        return self.manifest is not None and self.problem is None and not self.missing_segments


@dataclass(slots=True)
class TargetListing:
    """Everything found on one target, or why it could not be listed."""

    name: str
    region: str
    error: str | None = None
    copies: dict[str, StoredCopy] = field(default_factory=dict)
    segments: frozenset[str] = frozenset()
    other_names: tuple[str, ...] = ()

    @property
    def reachable(self) -> bool:
        return self.error is None

    def referenced_segments(self) -> set[str]:
        return {
            s.name
            for c in self.copies.values()
            if c.manifest is not None
            for s in c.manifest.segments
        }

    def orphan_segments(self) -> list[str]:
        """Segments no authentic manifest on this target names: left by an interrupted backup
        or copy, or by a prune that was refused half-way. Reported, never deleted by prune
        (a backup in progress writes its segments before its manifest)."""
        return sorted(self.segments - self.referenced_segments())

    def chain(self, backup_id: str) -> list[str] | None:
        """``backup_id`` and the backups its previous links lead to, back to its full backup
        (newest first), or None when a link is missing or incomplete on this target."""
        out: list[str] = []
        current: str | None = backup_id
        while current is not None:
            copy = self.copies.get(current)
            if copy is None or not copy.complete or copy.manifest is None:
                return None
            out.append(current)
            if copy.manifest.kind is BackupKind.FULL:
                return out
            link = copy.manifest.previous
            if link is None or len(out) > len(self.copies):
                return None
            previous = self.copies.get(link.backup_id)
            if previous is None or previous.manifest is None:
                return None
            if previous.manifest.manifest_id != link.manifest_id:
                return None
            current = link.backup_id
        return None

    def restorable(self, backup_id: str) -> bool:
        return self.chain(backup_id) is not None


@dataclass(slots=True)
class Inventory:
    """The listings of several targets side by side."""

    listings: list[TargetListing]

    def listing(self, name: str) -> TargetListing:
        for listing in self.listings:
            if listing.name == name:
                return listing
        raise KeyError(name)

    def backup_ids(self) -> list[str]:
        """Every backup id with an authentic manifest on some target, oldest first (ids sort by
        creation time)."""
        return sorted(
            {
                bid
                for listing in self.listings
                for bid, copy in listing.copies.items()
                if copy.manifest is not None
            }
        )

    def manifest(self, backup_id: str) -> Manifest | None:
        for listing in self.listings:
            copy = listing.copies.get(backup_id)
            if copy is not None and copy.manifest is not None:
                return copy.manifest
        return None

    def complete_copies(self, backup_id: str) -> list[TargetListing]:
        return [
            listing
            for listing in self.listings
            if (copy := listing.copies.get(backup_id)) is not None and copy.complete
        ]

    def newest_restorable(self) -> tuple[str, datetime] | None:
        """The newest backup restorable from at least one target, and when it was taken."""
        for backup_id in reversed(self.backup_ids()):
            manifest = self.manifest(backup_id)
            if manifest is not None and any(ls.restorable(backup_id) for ls in self.listings):
                return backup_id, manifest.created
        return None


def survey_target(target: BackupTarget, verifier: ManifestVerifier) -> TargetListing:
    """List ``target`` and authenticate each manifest on it. A target that cannot be reached
    is a listing with ``error`` set, never an exception: one target down must not hide what
    the others hold."""
    listing = TargetListing(target.label, target.region)
    try:
        manifest_names = target.list_names(MANIFEST_PREFIX)
        segments = frozenset(target.list_names(SEGMENT_PREFIX))
    except HearthError as exc:
        listing.error = f"{exc.detail} [{exc.code.code}]"
        return listing
    listing.segments = segments
    others: list[str] = []
    try:
        for name in manifest_names:
            backup_id = backup_id_from_manifest_name(name)
            if backup_id is None:
                others.append(name)
                continue
            listing.copies[backup_id] = _read_copy(target, backup_id, verifier, segments)
    except HearthError as exc:
        listing.error = f"{exc.detail} [{exc.code.code}]"
        listing.copies.clear()
    listing.other_names = tuple(others)
    return listing


def _read_copy(
    target: BackupTarget, backup_id: str, verifier: ManifestVerifier, segments: frozenset[str]
) -> StoredCopy:
    try:
        data = target.get_bytes(manifest_object_name(backup_id))
        manifest = open_manifest(data, verifier).manifest
    except IntegrityError:
        return StoredCopy(target.label, backup_id, None, "the manifest signature does not verify")
    except HearthError as exc:
        return StoredCopy(
            target.label, backup_id, None, f"the manifest is unreadable: {exc.detail}"
        )
    if manifest.backup_id != backup_id:
        return StoredCopy(target.label, backup_id, None, "the manifest belongs to another name")
    missing = tuple(s.name for s in manifest.segments if s.name not in segments)
    return StoredCopy(target.label, backup_id, manifest, None, missing)


def survey(targets: Iterable[BackupTarget], verifier: ManifestVerifier) -> Inventory:
    return Inventory([survey_target(t, verifier) for t in targets])


def names_of(copies: Sequence[TargetListing]) -> str:
    return ", ".join(c.name for c in copies) or "none"
