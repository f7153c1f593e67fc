"""The backup copy policy (3-2-1) and the recovery point objective, checked against what the
targets actually hold (``hearth backup check-policy``; docs/operations.md, "The copy policy").

Rules, each reported with exactly what is missing:

- ``targets.count``: fewer targets configured than ``min_copies``;
- ``targets.offsite``: with ``require_offsite``, no configured target outside
  ``primary_region``;
- ``region.allowed``: a target's region matches none of ``allowed_regions`` (residency);
- ``target.unreachable``: a target could not be listed (its copies cannot be counted);
- ``backups.none``: no backup exists on any target;
- ``copy.damaged``: a manifest that does not authenticate, or a copy missing segments;
- ``copies``: a backup with fewer than ``min_copies`` complete copies on distinct targets;
- ``offsite``: a backup with no complete copy in a region other than ``primary_region`` (copies
  in regions outside ``allowed_regions`` do not count);
- ``rpo``: the newest restorable backup is older than ``alarms.backup_rpo_hours``.

A failed check raises ``policy.offsite_missing`` (and ``backup.stale`` for the RPO); a check
that passes resolves them, so the alarm list shows only conditions that still hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from hearth.domain import Alarm, AlarmKind, AlarmRaiser, Severity
from hearth.services.alarms import check_backup_stale, iso_seconds
from hearth.services.backup_inventory import Inventory, names_of
from hearth.settings import BackupSettings

__all__ = [
    "POLICY_SUBJECT",
    "STALE_SUBJECT",
    "AlarmControl",
    "PolicyFinding",
    "PolicyReport",
    "apply_policy_alarms",
    "check_policy",
]

POLICY_SUBJECT = "backup-policy"
STALE_SUBJECT = "backups"
CHECKER = "system:backup-policy"


class AlarmControl(AlarmRaiser, Protocol):
    """Raising, and resolving an alarm whose condition has ended (``AlarmService``)."""

    def clear_alarm(self, kind: AlarmKind, subject: str, *, by: str, note: str) -> int: ...


@dataclass(frozen=True, slots=True)
class PolicyFinding:
    rule: str
    subject: str  # policy | target:NAME | backup:ID | backup:ID@TARGET
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"rule": self.rule, "subject": self.subject, "detail": self.detail}


@dataclass(slots=True)
class PolicyReport:
    findings: list[PolicyFinding] = field(default_factory=list)
    backups: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: list[dict[str, Any]] = field(default_factory=list)
    newest: str | None = None
    newest_created: datetime | None = None
    rpo_hours: float = 24.0
    age_hours: float | None = None

    @property
    def stale(self) -> bool:
        return any(f.rule == "rpo" for f in self.findings)

    @property
    def copy_findings(self) -> list[PolicyFinding]:
        return [f for f in self.findings if f.rule != "rpo"]

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "findings": [f.to_json() for f in self.findings],
            "targets": self.targets,
            "backups": self.backups,
            "rpo": {
                "hours": self.rpo_hours,
                "newest_backup": self.newest,
                "newest_created": iso_seconds(self.newest_created),
                "age_hours": None if self.age_hours is None else round(self.age_hours, 2),
                "ok": not self.stale,
            },
        }


def check_policy(
    policy: BackupSettings, inventory: Inventory, *, now: datetime, rpo_hours: float
) -> PolicyReport:
    report = PolicyReport(rpo_hours=rpo_hours)
    add = report.findings.append
    primary = policy.primary_region
    configured = {t.name: t for t in policy.targets}
    listings = inventory.listings
    if len(listings) < policy.min_copies:
        add(
            PolicyFinding(
                "targets.count",
                "policy",
                f"{len(listings)} target(s) configured, min_copies is {policy.min_copies}: "
                "add [[backup.targets]]",
            )
        )
    if policy.require_offsite and not any(ls.region != primary for ls in listings):
        add(
            PolicyFinding(
                "targets.offsite",
                "policy",
                f"no target is outside the primary region {primary}: add an s3 or sftp "
                "target in another region",
            )
        )
    allowed: set[str] = set()
    for listing in listings:
        region_ok = policy.region_allowed(listing.region)
        if region_ok:
            allowed.add(listing.name)
        else:
            add(
                PolicyFinding(
                    "region.allowed",
                    f"target:{listing.name}",
                    f"region {listing.region} is outside allowed_regions "
                    f"{list(policy.allowed_regions)}",
                )
            )
        if not listing.reachable:
            add(PolicyFinding("target.unreachable", f"target:{listing.name}", str(listing.error)))
        config = configured.get(listing.name)
        report.targets.append(
            {
                "name": listing.name,
                "kind": config.kind if config else None,
                "region": listing.region,
                "offsite": listing.region != primary,
                "region_allowed": region_ok,
                "reachable": listing.reachable,
                "error": listing.error,
                "backups": sum(1 for c in listing.copies.values() if c.complete),
                "orphan_segments": len(listing.orphan_segments()) if listing.reachable else 0,
            }
        )
        for copy in listing.copies.values():
            if copy.problem is not None:
                add(
                    PolicyFinding(
                        "copy.damaged", f"backup:{copy.backup_id}@{listing.name}", copy.problem
                    )
                )
            elif copy.missing_segments:
                add(
                    PolicyFinding(
                        "copy.damaged",
                        f"backup:{copy.backup_id}@{listing.name}",
                        f"{len(copy.missing_segments)} segment(s) missing, first "
                        f"{copy.missing_segments[0]}",
                    )
                )
    ids = inventory.backup_ids()
    if not ids:
        add(PolicyFinding("backups.none", "policy", "no backup exists on any target"))
    for backup_id in ids:
        complete = inventory.complete_copies(backup_id)
        offsite = [c for c in complete if c.region != primary and c.name in allowed]
        report.backups[backup_id] = {
            "copies": [c.name for c in complete],
            "offsite": [c.name for c in offsite],
            "restorable_from": [c.name for c in complete if c.restorable(backup_id)],
        }
        if len(complete) < policy.min_copies:
            missing = [ls.name for ls in listings if ls not in complete and ls.name in allowed]
            hint = f"; copy it to {', '.join(missing)}" if missing else ""
            add(
                PolicyFinding(
                    "copies",
                    f"backup:{backup_id}",
                    f"{len(complete)} complete cop{'y' if len(complete) == 1 else 'ies'} "
                    f"({names_of(complete)}), min_copies is {policy.min_copies}{hint}",
                )
            )
        if policy.require_offsite and not offsite:
            candidates = [ls.name for ls in listings if ls.region != primary and ls.name in allowed]
            hint = f"; copy it to {', '.join(candidates)}" if candidates else ""
            add(
                PolicyFinding(
                    "offsite",
                    f"backup:{backup_id}",
                    f"no complete copy outside the primary region {primary} "
                    f"(copies: {names_of(complete)}){hint}",
                )
            )
    newest = inventory.newest_restorable()
    if newest is not None:
        report.newest, report.newest_created = newest
        report.age_hours = (now - newest[1]).total_seconds() / 3600
    if report.age_hours is None or report.age_hours > rpo_hours:
        age = "no restorable backup" if newest is None else f"{report.age_hours:.1f} hours old"
        add(
            PolicyFinding(
                "rpo",
                STALE_SUBJECT,
                f"the newest restorable backup is {age}; the RPO is {rpo_hours:g} hours",
            )
        )
    return report


def apply_policy_alarms(report: PolicyReport, alarms: AlarmControl, *, now: datetime) -> None:
    """Raise or resolve ``policy.offsite_missing`` and ``backup.stale`` to match ``report``."""
    copy_findings = report.copy_findings
    if copy_findings:
        rules = sorted({f.rule for f in copy_findings})
        newest_offsite = report.newest is None or any(
            f.rule == "offsite" and f.subject == f"backup:{report.newest}" for f in copy_findings
        )
        alarms.raise_alarm(
            Alarm(
                AlarmKind.POLICY_OFFSITE_MISSING,
                Severity.CRITICAL if newest_offsite else Severity.WARNING,
                POLICY_SUBJECT,
                "The backups do not meet the copy policy: run hearth backup check-policy.",
                {
                    "findings": str(len(copy_findings)),
                    "rules": ",".join(rules),
                    "first": copy_findings[0].detail[:200],
                },
            )
        )
    else:
        alarms.clear_alarm(
            AlarmKind.POLICY_OFFSITE_MISSING,
            POLICY_SUBJECT,
            by=CHECKER,
            note="the copy policy is met",
        )
    rpo = timedelta(hours=report.rpo_hours)
    if not check_backup_stale(
        alarms,
        last_success=report.newest_created,
        now=now,
        rpo=rpo,
        subject=STALE_SUBJECT,
    ):
        alarms.clear_alarm(
            AlarmKind.BACKUP_STALE,
            STALE_SUBJECT,
            by=CHECKER,
            note=f"backup {report.newest} is within the RPO",
        )
