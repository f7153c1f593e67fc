"""Retention: grandfather-father-son selection, chain awareness, the last restorable backup,
and Object Lock on a real S3 server (held in the plan, refused by the server)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hearth.backupfmt import BackupKind, manifest_object_name, verify_chain
from hearth.services.backup_inventory import survey
from hearth.services.backup_retention import apply_prune, plan_prune, select_gfs
from hearth.settings import BackupSettings
from hearth.targets import BackupTarget, LocalDirectoryTarget
from tests.integration.backupops.support import Backups, policy_for
from tests.unit.backupfmt.helpers import T0

WALL = datetime.now(UTC)


def test_grandfather_father_son_selection() -> None:
    # One backup a day at 01:00 for two years, plus a second one on the last day.
    start = datetime(2024, 1, 1, 1, tzinfo=UTC)
    created = {f"d{n:04d}": start + timedelta(days=n) for n in range(731)}
    created["d0730b"] = start + timedelta(days=730, hours=5)
    policy = BackupSettings(keep_daily=7, keep_weekly=4, keep_monthly=12, keep_yearly=3)
    keep = select_gfs(created, policy)
    assert keep["d0730b"] == ["newest", "daily", "weekly", "monthly", "yearly"]
    assert "d0730" not in keep  # the same day's older backup
    daily = sorted(b for b, why in keep.items() if "daily" in why)
    assert daily == ["d0724", "d0725", "d0726", "d0727", "d0728", "d0729", "d0730b"]
    weekly = [b for b, why in keep.items() if "weekly" in why]
    assert len(weekly) == 4
    assert all(created[b].isoweekday() == 7 for b in weekly if b != "d0730b")  # Sundays
    monthly = sorted(b for b, why in keep.items() if "monthly" in why)
    assert len(monthly) == 12
    assert all((created[b] + timedelta(days=1)).day == 1 for b in monthly if b != "d0730b")
    # Three years are allowed but only two have backups: the last of 2024, and the newest.
    yearly = sorted(b for b, why in keep.items() if "yearly" in why)
    assert yearly == ["d0365", "d0730b"]
    assert select_gfs({}, policy) == {}


def make_chains(tmp_path: Path, targets: list[BackupTarget], **kw: object) -> Backups:
    """Full + 3 incrementals on days 0-3, full + 2 incrementals on days 40-42."""
    backups = Backups(tmp_path / "spool")
    for day in range(4):
        kind = BackupKind.FULL if day == 0 else BackupKind.INCREMENTAL
        backups.add(targets, kind=kind, when=T0 + timedelta(days=day), **kw)  # type: ignore[arg-type]
    for day in range(40, 43):
        kind = BackupKind.FULL if day == 40 else BackupKind.INCREMENTAL
        backups.add(targets, kind=kind, when=T0 + timedelta(days=day), **kw)  # type: ignore[arg-type]
    return backups


def test_prune_keeps_chains_and_deletes_the_rest(tmp_path: Path) -> None:
    here = LocalDirectoryTarget(tmp_path / "here", label="here", region="primary")
    away = LocalDirectoryTarget(tmp_path / "away", label="away", region="offsite")
    backups = make_chains(tmp_path, [here, away])
    old, new = backups.ids[:4], backups.ids[4:]
    policy = policy_for([here, away], keep_daily=2, keep_weekly=0, keep_monthly=0, keep_yearly=0)
    # A manifest that does not authenticate is left for a person to look at.
    (here.root / manifest_object_name(old[0])).write_bytes(b"{}")
    inventory = survey([here, away], backups.verifier)
    plan = plan_prune(inventory, policy, [here, away], now=T0 + timedelta(days=43))
    # The two newest days are kept, and the full backup they depend on.
    assert plan.keep[new[2]] == ["newest", "daily", "newest restorable"]
    assert plan.keep[new[1]] == ["daily", f"needed by {new[2]}"]
    assert set(plan.keep[new[0]]) == {f"needed by {new[2]}", f"needed by {new[1]}"}
    assert plan.note is not None
    assert plan.note.startswith("1 backup(s) are kept only because newer incrementals")
    assert sorted((d.target, d.backup_id) for d in plan.to_delete) == sorted(
        [("away", b) for b in old] + [("here", b) for b in old[1:]]
    )
    (untouched,) = plan.untouched
    assert (untouched["target"], untouched["backup_id"]) == ("here", old[0])
    assert plan.held == []
    # A dry run (the plan alone) deletes nothing.
    assert len(here.list_names("manifests/")) == 7
    result = apply_prune(plan, [here, away])
    assert result.refused == []
    assert len(result.deleted) == 7
    assert here.list_names("manifests/") == [manifest_object_name(b) for b in [old[0], *new]]
    assert away.list_names("manifests/") == [manifest_object_name(b) for b in new]
    for target in (here, away):
        listing = survey([target], backups.verifier).listings[0]
        for backup_id in new:
            assert listing.restorable(backup_id)
        # Only the unreadable backup's segments are left over, and reported.
        expected = {s.name for s in backups.manifests[0].segments} if target is here else set()
        assert set(listing.orphan_segments()) == expected
    verify_chain(away, backups.verifier, decryptor=backups.keys.decryptor)
    # Running again finds nothing more to do.
    again = plan_prune(survey([here, away], backups.verifier), policy, [here, away], now=WALL)
    assert again.to_delete == []


def test_nothing_goes_while_no_newer_backup_is_restorable(tmp_path: Path) -> None:
    here = LocalDirectoryTarget(tmp_path / "here", label="here", region="primary")
    backups = make_chains(tmp_path, [here])
    old, new = backups.ids[:4], backups.ids[4:]
    policy = policy_for([here], keep_daily=1, keep_weekly=0, keep_monthly=0, keep_yearly=0)
    # The newer chain's full backup lost a segment: the older chain is the only way back.
    (here.root / backups.manifests[4].segments[0].name).unlink()
    plan = plan_prune(survey([here], backups.verifier), policy, [here], now=WALL)
    assert plan.keep[old[3]] == ["newest restorable"]
    assert set(plan.keep) >= {*old, *new}
    assert plan.to_delete == []
    # Nothing restorable at all: nothing is deleted, and the plan says why.
    for manifest in backups.manifests[:4]:
        (here.root / manifest.segments[-1].name).unlink(missing_ok=True)
    plan = plan_prune(survey([here], backups.verifier), policy, [here], now=WALL)
    assert plan.deletions == []
    assert plan.note is not None
    assert "nothing will be deleted" in plan.note


def test_object_lock_holds_and_the_server_refuses(
    tmp_path: Path, make_target: Callable[[str], BackupTarget]
) -> None:
    s3 = make_target("s3")
    here = LocalDirectoryTarget(tmp_path / "here", label="here", region="primary")
    policy = policy_for([here, s3], keep_daily=1, keep_weekly=0, keep_monthly=0, keep_yearly=0)
    backups = Backups(tmp_path / "spool")
    locked = backups.add([here, s3], when=T0, retain_until=WALL + timedelta(days=1))
    unlocked = backups.add([here, s3], kind=BackupKind.FULL, when=T0 + timedelta(days=1))
    newest = backups.add([here, s3], kind=BackupKind.FULL, when=T0 + timedelta(days=2))
    plan = plan_prune(survey([here, s3], backups.verifier), policy, [here, s3], now=WALL)
    assert list(plan.keep) == [newest.backup_id]
    (held,) = plan.held
    assert (held.target, held.backup_id) == ("s3-test", locked.backup_id)
    assert held.held_until is not None
    assert held.held_until > WALL
    assert {(d.target, d.backup_id) for d in plan.to_delete} == {
        ("here", locked.backup_id),
        ("here", unlocked.backup_id),
        ("s3-test", unlocked.backup_id),
    }
    # Between the plan and the run someone puts the unlocked backup's manifest under
    # retention: the server refuses the delete, the run reports it, and the backup's segments
    # stay (a manifest is never left without them).
    client = s3._client  # type: ignore[attr-defined]
    client.put_object_retention(
        Bucket=s3.bucket,  # type: ignore[attr-defined]
        Key=s3.prefix + manifest_object_name(unlocked.backup_id),  # type: ignore[attr-defined]
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": WALL + timedelta(days=1)},
    )
    result = apply_prune(plan, [here, s3])
    assert result.refused == [
        {
            "target": "s3-test",
            "object": manifest_object_name(unlocked.backup_id),
            "why": "under retention (Object Lock)",
        }
    ]
    assert all(s3.exists(s.name) for s in unlocked.segments)
    assert s3.exists(manifest_object_name(locked.backup_id))
    assert here.list_names("manifests/") == [manifest_object_name(newest.backup_id)]
    verify_chain(s3, backups.verifier)
