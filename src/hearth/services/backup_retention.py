"""Retention: which backups to keep (grandfather-father-son), and deleting the rest safely
(``hearth backup prune [--dry-run]``; docs/design.md, "Retention").

Selection, restic's ``forget --keep-*`` rules over backup creation times (UTC): the newest
backup of each of the last ``keep_daily`` days that have a backup, ``keep_weekly`` ISO weeks,
``keep_monthly`` months and ``keep_yearly`` years; the newest backup always.

Safety rules, in this order; each kept backup carries its reasons:

1. every backup a kept incremental depends on (its ``previous`` links back to its full
   backup) is kept: deleting it would make the incremental unrestorable;
2. the newest backup restorable from some target is kept with its chain, and if no backup is
   restorable nothing is deleted at all: prune never removes the last way back;
3. a manifest that does not authenticate is never deleted (someone must look at it), nor are
   segments no authentic manifest names (a backup in progress writes those first);
4. a segment still named by a kept manifest on the same target is never deleted;
5. an object under retention (S3 Object Lock) is never deleted: the plan shows it as held
   until its date, and a refusal by the server during the run is reported, not fatal.

On each target a backup goes manifest first, then its segments, so a half-finished prune
leaves orphan segments (reported by ``check-policy``), never a manifest whose segments are gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hearth.backupfmt import BackupKind, Manifest
from hearth.backupfmt.naming import manifest_object_name
from hearth.domain import HearthError
from hearth.domain.errors import TARGET_OBJECT_LOCKED, TARGET_OBJECT_NOT_FOUND
from hearth.services.backup_inventory import Inventory, TargetListing
from hearth.settings import BackupSettings

if TYPE_CHECKING:
    # Only for annotations: importing hearth.targets loads boto3 and paramiko.
    from hearth.targets import BackupTarget

__all__ = ["Deletion", "PrunePlan", "PruneResult", "apply_prune", "plan_prune", "select_gfs"]

_BUCKETS: tuple[tuple[str, str, Callable[[datetime], object]], ...] = (
    ("daily", "keep_daily", lambda t: t.date()),
    ("weekly", "keep_weekly", lambda t: t.isocalendar()[:2]),
    ("monthly", "keep_monthly", lambda t: (t.year, t.month)),
    ("yearly", "keep_yearly", lambda t: t.year),
)


def select_gfs(created: dict[str, datetime], policy: BackupSettings) -> dict[str, list[str]]:
    """The backups grandfather-father-son keeps, each with its reasons (``daily``, ...)."""
    newest_first = sorted(created, key=lambda b: (created[b], b), reverse=True)
    keep: dict[str, list[str]] = {}
    if newest_first:
        keep[newest_first[0]] = ["newest"]
    for reason, setting, bucket in _BUCKETS:
        limit = int(getattr(policy, setting))
        seen: object = None
        count = 0
        for backup_id in newest_first:
            if count >= limit:
                break
            key = bucket(created[backup_id].astimezone(UTC))
            if key != seen:
                seen = key
                count += 1
                keep.setdefault(backup_id, []).append(reason)
    return keep


@dataclass(frozen=True, slots=True)
class Deletion:
    """One backup's objects to delete from one target."""

    target: str
    backup_id: str
    manifest: str
    segments: tuple[str, ...]
    bytes: int
    held_until: datetime | None = None  # under Object Lock until then: not deleted

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "backup_id": self.backup_id,
            "objects": 1 + len(self.segments),
            "bytes": self.bytes,
            "held_until": None if self.held_until is None else self.held_until.isoformat(),
        }


@dataclass(slots=True)
class PrunePlan:
    keep: dict[str, list[str]] = field(default_factory=dict)
    deletions: list[Deletion] = field(default_factory=list)
    untouched: list[dict[str, str]] = field(default_factory=list)  # damaged, unreachable
    note: str | None = None

    @property
    def held(self) -> list[Deletion]:
        return [d for d in self.deletions if d.held_until is not None]

    @property
    def to_delete(self) -> list[Deletion]:
        return [d for d in self.deletions if d.held_until is None]

    def to_json(self) -> dict[str, Any]:
        return {
            "keep": dict(sorted(self.keep.items())),
            "delete": [d.to_json() for d in self.to_delete],
            "held": [d.to_json() for d in self.held],
            "untouched": self.untouched,
            "note": self.note,
        }


def _chain_ids(inventory: Inventory, backup_id: str) -> list[str]:
    """``backup_id`` and what it depends on, from any target's authentic manifests."""
    out: list[str] = []
    current: str | None = backup_id
    while current is not None and current not in out:
        out.append(current)
        manifest: Manifest | None = inventory.manifest(current)
        if manifest is None or manifest.kind is BackupKind.FULL or manifest.previous is None:
            break
        current = manifest.previous.backup_id
    return out


def plan_prune(
    inventory: Inventory,
    policy: BackupSettings,
    targets: Iterable[BackupTarget],
    *,
    now: datetime,
) -> PrunePlan:
    """What ``prune`` would delete and keep, and why. Reads lock dates (one request per
    backup per target that supports immutability); deletes nothing."""
    plan = PrunePlan()
    by_name = {t.label: t for t in targets}
    created: dict[str, datetime] = {}
    for backup_id in inventory.backup_ids():
        manifest = inventory.manifest(backup_id)
        if manifest is not None:
            created[backup_id] = manifest.created
    keep = select_gfs(created, policy)
    newest = inventory.newest_restorable()
    if newest is None:
        plan.keep = {b: [*keep.get(b, []), "no backup is restorable"] for b in created}
        plan.note = "No backup is restorable from any target: nothing will be deleted."
        return plan
    keep.setdefault(newest[0], []).append("newest restorable")
    for backup_id in list(keep):
        for dependency in _chain_ids(inventory, backup_id)[1:]:
            reasons = keep.setdefault(dependency, [])
            if f"needed by {backup_id}" not in reasons:
                reasons.append(f"needed by {backup_id}")
    # Nothing newer than the newest restorable backup is deleted: it may be a chain that is
    # being repaired or copied.
    for backup_id in created:
        if backup_id > newest[0]:
            keep.setdefault(backup_id, []).append("newer than the newest restorable backup")
    plan.keep = keep
    chained = [b for b, why in keep.items() if all(r.startswith("needed by ") for r in why)]
    if chained:
        plan.note = (
            f"{len(chained)} backup(s) are kept only because newer incrementals depend on "
            "them; after a full backup (hearth backup create --full) a later prune can remove "
            "them."
        )
    for listing in inventory.listings:
        if not listing.reachable:
            plan.untouched.append({"target": listing.name, "why": str(listing.error)})
            continue
        target = by_name.get(listing.name)
        _plan_target(plan, listing, target, keep, now)
    return plan


def _plan_target(
    plan: PrunePlan,
    listing: TargetListing,
    target: BackupTarget | None,
    keep: dict[str, list[str]],
    now: datetime,
) -> None:
    protected: set[str] = set()
    for copy in listing.copies.values():
        if copy.manifest is None:
            plan.untouched.append(
                {
                    "target": listing.name,
                    "backup_id": copy.backup_id,
                    "why": str(copy.problem),
                }
            )
        elif copy.backup_id in keep:
            protected.update(s.name for s in copy.manifest.segments)
    for backup_id, copy in sorted(listing.copies.items()):
        if copy.manifest is None or backup_id in keep:
            continue
        segments = tuple(
            s.name
            for s in copy.manifest.segments
            if s.name not in protected and s.name in listing.segments
        )
        name = manifest_object_name(backup_id)
        held = None
        if target is not None and target.supports_immutability:
            until = target.immutable_until(name)
            if until is not None and until > now:
                held = until
        size = sum(s.stored_length for s in copy.manifest.segments if s.name in segments)
        plan.deletions.append(Deletion(listing.name, backup_id, name, segments, size, held))
        # A segment shared with another deleted backup is deleted once.
        protected.update(segments)


@dataclass(slots=True)
class PruneResult:
    deleted: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "refused": self.refused}


def apply_prune(
    plan: PrunePlan,
    targets: Iterable[BackupTarget],
    *,
    on_object: Callable[[], None] | None = None,
) -> PruneResult:
    """Carry out ``plan``'s deletions (never the held ones). A deletion the target refuses
    because of retention is reported and the backup's segments are left in place."""
    by_name = {t.label: t for t in targets}
    result = PruneResult()
    for deletion in plan.to_delete:
        target = by_name[deletion.target]
        try:
            target.delete(deletion.manifest)
        except HearthError as exc:
            if exc.code is TARGET_OBJECT_NOT_FOUND:
                pass  # already gone (an earlier, interrupted run)
            elif exc.code is TARGET_OBJECT_LOCKED:
                result.refused.append(
                    {
                        "target": deletion.target,
                        "object": deletion.manifest,
                        "why": "under retention (Object Lock)",
                    }
                )
                continue
            else:
                raise
        removed = 1
        for segment in deletion.segments:
            try:
                target.delete(segment)
                removed += 1
            except HearthError as exc:
                if exc.code is TARGET_OBJECT_LOCKED:
                    result.refused.append(
                        {
                            "target": deletion.target,
                            "object": segment,
                            "why": "under retention (Object Lock)",
                        }
                    )
                elif exc.code is not TARGET_OBJECT_NOT_FOUND:
                    raise
            if on_object is not None:
                on_object()
        result.deleted.append(
            {"target": deletion.target, "backup_id": deletion.backup_id, "objects": removed}
        )
    return result
