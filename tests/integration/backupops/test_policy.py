"""``check_policy``: copies on distinct targets, an off-site copy, allowed regions and the RPO,
with each shortfall named; alarms raised while it holds and resolved when it ends."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from hearth.domain import AlarmKind, AlarmState, Severity
from hearth.services.backup_copy import copy_backups
from hearth.services.backup_inventory import survey
from hearth.services.backup_policy import apply_policy_alarms, check_policy
from hearth.targets import LocalDirectoryTarget, OfflineMediaTarget
from tests.alarm_support import service_for
from tests.integration.backupops.support import Backups, policy_for
from tests.support import FixedClock, Instance
from tests.unit.backupfmt.helpers import T0


def rules(report: object) -> set[tuple[str, str]]:
    return {(f.rule, f.subject) for f in report.findings}  # type: ignore[attr-defined]


def test_what_is_missing_is_named_then_copy_meets_the_policy(
    tmp_path: Path, inst: Instance, clock: FixedClock
) -> None:
    here = LocalDirectoryTarget(tmp_path / "here", label="here", region="primary")
    away = LocalDirectoryTarget(tmp_path / "away", label="away", region="us-west")
    backups = Backups(tmp_path / "spool")
    for _ in range(3):
        backups.add([here])
    policy = policy_for([here, away])
    now = T0 + timedelta(hours=5)
    report = check_policy(policy, survey([here, away], backups.verifier), now=now, rpo_hours=24)
    full, inc1, inc2 = backups.ids
    assert rules(report) == {
        *{("copies", f"backup:{b}") for b in backups.ids},
        *{("offsite", f"backup:{b}") for b in backups.ids},
    }
    detail = {f.subject: f.detail for f in report.findings if f.rule == "copies"}
    assert detail[f"backup:{full}"] == ("1 complete copy (here), min_copies is 2; copy it to away")
    assert report.backups[inc2]["restorable_from"] == ["here"]
    assert report.newest == inc2
    service = service_for(inst, [], clock)
    apply_policy_alarms(report, service, now=now)
    service.process()
    (alarm,) = service.list_alarms()
    assert (alarm.kind, alarm.severity, alarm.subject) == (
        AlarmKind.POLICY_OFFSITE_MISSING,
        Severity.CRITICAL,
        "backup-policy",
    )
    assert alarm.details["rules"] == "copies,offsite"

    copied = copy_backups(
        here,
        away,
        backups.verifier,
        policy=policy,
        backup_ids=None,
        now=now,
        spool=tmp_path / "copy-spool",
    )
    assert copied.copied == backups.ids
    report = check_policy(policy, survey([here, away], backups.verifier), now=now, rpo_hours=24)
    assert report.ok, report.findings
    assert report.backups[inc1]["offsite"] == ["away"]
    apply_policy_alarms(report, service, now=now)
    service.process()
    assert service.list_alarms(states=[AlarmState.OPEN]) == []
    (resolved,) = service.list_alarms(states=[AlarmState.RESOLVED])
    assert resolved.resolved_by == "system:backup-policy"


def test_regions_targets_and_damage(tmp_path: Path) -> None:
    here = LocalDirectoryTarget(tmp_path / "here", label="here", region="primary")
    eu = LocalDirectoryTarget(tmp_path / "eu", label="eu", region="eu-west")
    gone = LocalDirectoryTarget(tmp_path / "gone", label="gone", region="us-east")
    backups = Backups(tmp_path / "spool")
    full = backups.add([here, eu])
    # A US-only residency rule: the EU copy breaks it and does not count as off-site.
    policy = policy_for([here, eu], allowed_regions=("us-*", "primary"), min_copies=3)
    now = T0 + timedelta(hours=1)
    report = check_policy(policy, survey([here, eu], backups.verifier), now=now, rpo_hours=24)
    assert rules(report) == {
        ("targets.count", "policy"),
        ("region.allowed", "target:eu"),
        ("copies", f"backup:{full.backup_id}"),
        ("offsite", f"backup:{full.backup_id}"),
    }
    # A missing segment makes a copy incomplete; an unreachable target is named.
    (here.root / full.segments[0].name).unlink()
    offline = OfflineMediaTarget(
        tmp_path / "unmounted", media_id="disk-1", label="gone", region="us-east"
    )
    policy = policy_for([here, gone])
    report = check_policy(policy, survey([here, offline], backups.verifier), now=now, rpo_hours=24)
    found = rules(report)
    assert ("copy.damaged", f"backup:{full.backup_id}@here") in found
    assert ("target.unreachable", "target:gone") in found
    assert ("rpo", "backups") in found  # nothing restorable any more
    assert ("targets.offsite", "policy") not in found


def test_rpo_stale_and_fresh(tmp_path: Path, inst: Instance, clock: FixedClock) -> None:
    here = LocalDirectoryTarget(tmp_path / "here", label="here", region="primary")
    away = LocalDirectoryTarget(tmp_path / "away", label="away", region="offsite")
    backups = Backups(tmp_path / "spool")
    service = service_for(inst, [], clock)
    policy = policy_for([here, away])
    report = check_policy(policy, survey([here, away], backups.verifier), now=T0, rpo_hours=24)
    assert ("backups.none", "policy") in rules(report)
    assert report.stale
    apply_policy_alarms(report, service, now=T0)
    service.process()
    kinds = {a.kind for a in service.list_alarms()}
    assert kinds == {AlarmKind.POLICY_OFFSITE_MISSING, AlarmKind.BACKUP_STALE}
    backups.add([here, away], when=T0)
    later = T0 + timedelta(hours=30)
    report = check_policy(policy, survey([here, away], backups.verifier), now=later, rpo_hours=24)
    assert rules(report) == {("rpo", "backups")}
    assert report.to_json()["rpo"]["age_hours"] == 30.0
    fresh = T0 + timedelta(hours=2)
    report = check_policy(policy, survey([here, away], backups.verifier), now=fresh, rpo_hours=24)
    assert report.ok
    apply_policy_alarms(report, service, now=fresh)
    service.process()
    assert service.list_alarms(states=[AlarmState.OPEN]) == []
