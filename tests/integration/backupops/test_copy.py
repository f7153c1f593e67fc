"""``copy_backups``: ciphertext replicated between real targets, checked against the signed
manifest, chains kept whole, re-runs idempotent, Object Lock applied on the destination."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hearth.backupfmt import BackupKind, manifest_object_name, verify_chain
from hearth.domain import AlarmKind, HearthError, errors
from hearth.services.backup_copy import copy_backups
from hearth.settings import BackupTargetSettings
from hearth.targets import BackupTarget, LocalDirectoryTarget
from tests.alarm_support import service_for
from tests.integration.backupops.support import Backups, policy_for
from tests.support import FixedClock, Instance
from tests.unit.backupfmt.helpers import T0, make_keys

NOW = T0 + timedelta(days=1)
#: S3 servers refuse a retention date in the past: tests that lock use the real time.
WALL = datetime.now(UTC)


def test_copy_between_every_kind_of_target(
    tmp_path: Path, make_target: Callable[[str], BackupTarget]
) -> None:
    local, s3, sftp = make_target("local"), make_target("s3"), make_target("sftp")
    backups = Backups(tmp_path / "spool")
    backups.add([local], kind=BackupKind.FULL)
    backups.add([local])
    backups.add([local])
    policy = policy_for([local, s3, sftp], object_lock_days=3)
    # Copying the newest incremental brings the backups it depends on along, oldest first.
    report = copy_backups(
        local,
        s3,
        backups.verifier,
        policy=policy,
        backup_ids=[backups.ids[-1]],
        now=WALL,
        spool=tmp_path / "copy",
        instance_id="instance-1",
    )
    assert report.copied == backups.ids
    assert report.retain_until == WALL + timedelta(days=3)
    segments = sum(len(m.segments) for m in backups.manifests)
    assert report.segments_copied == segments
    # S3 copies are under Object Lock until then; the SFTP target cannot lock and is skipped
    # silently because the lock days come from the [backup] section.
    assert s3.immutable_until(manifest_object_name(backups.ids[0])) is not None
    with pytest.raises(HearthError) as refused:
        s3.delete(backups.manifests[0].segments[0].name)
    assert refused.value.code is errors.TARGET_OBJECT_LOCKED
    chained = copy_backups(
        s3, sftp, backups.verifier, policy=policy, backup_ids=None, now=NOW, spool=tmp_path / "c"
    )
    assert chained.copied == backups.ids
    assert chained.retain_until is None
    for target in (s3, sftp):
        verify_chain(target, backups.verifier, decryptor=backups.keys.decryptor)
    # A second run copies nothing and succeeds.
    again = copy_backups(
        local, sftp, backups.verifier, policy=policy, backup_ids=None, now=NOW, spool=tmp_path / "c"
    )
    assert (again.copied, again.present, again.segments_copied) == ([], backups.ids, 0)


def test_an_explicit_lock_on_a_target_that_cannot_lock_fails(tmp_path: Path) -> None:
    here = LocalDirectoryTarget(tmp_path / "here", label="here", region="primary")
    there = LocalDirectoryTarget(tmp_path / "there", label="there", region="elsewhere")
    backups = Backups(tmp_path / "spool")
    backups.add([here])
    policy = policy_for([here, there])
    policy = policy.__class__(
        primary_region="primary",
        targets=(
            policy.targets[0],
            BackupTargetSettings(
                name="there", kind="local", region="elsewhere", object_lock_days=7
            ),
        ),
    )
    with pytest.raises(HearthError) as refused:
        copy_backups(
            here, there, backups.verifier, policy=policy, backup_ids=None, now=NOW, spool=tmp_path
        )
    assert refused.value.code is errors.TARGET_IMMUTABILITY_UNSUPPORTED


def test_damage_and_forgery_on_the_source_are_refused(
    tmp_path: Path, inst: Instance, clock: FixedClock
) -> None:
    here = LocalDirectoryTarget(tmp_path / "here", label="here", region="primary")
    there = LocalDirectoryTarget(tmp_path / "there", label="there", region="elsewhere")
    backups = Backups(tmp_path / "spool")
    full = backups.add([here])
    inc = backups.add([here])
    policy = policy_for([here, there])
    alarms = service_for(inst, [], clock)

    def copy(target_ids: list[str] | None = None) -> object:
        return copy_backups(
            here,
            there,
            backups.verifier,
            policy=policy,
            backup_ids=target_ids,
            now=NOW,
            spool=tmp_path / "copy",
            alarms=alarms,
        )

    # One flipped bit in a segment of the incremental: its full backup is copied, then the
    # damaged segment is refused, and no manifest for the incremental is written.
    damaged = here.root / inc.segments[-1].name
    data = bytearray(damaged.read_bytes())
    data[10] ^= 1
    damaged.write_bytes(bytes(data))
    with pytest.raises(HearthError) as refused:
        copy()
    assert refused.value.code is errors.BACKUP_COPY_MISMATCH
    assert there.exists(manifest_object_name(full.backup_id))
    assert not there.exists(manifest_object_name(inc.backup_id))
    assert not there.exists(inc.segments[-1].name)
    alarms.process()
    (alarm,) = alarms.list_alarms()
    assert alarm.kind is AlarmKind.BACKUP_VERIFY_FAILED
    assert alarm.subject == f"backup:{inc.backup_id}@here"
    # A manifest signed by another key is refused before anything is written.
    other = Backups(tmp_path / "other-spool", keys=make_keys(b"someone else"))
    forged = other.add([here], when=T0 + timedelta(days=3))
    with pytest.raises(HearthError) as refused:
        copy([forged.backup_id])
    assert refused.value.code is errors.BACKUP_INVALID
    assert not any(there.exists(s.name) for s in forged.segments)
    # A missing backup and a destination outside the allowed regions are plain errors.
    with pytest.raises(HearthError, match="is not on here"):
        copy(["20250101T000000Z-0000000000000000"])
    us_only = policy_for([here, there], allowed_regions=("primary",))
    with pytest.raises(HearthError) as refused:
        copy_backups(
            here, there, backups.verifier, policy=us_only, backup_ids=None, now=NOW, spool=tmp_path
        )
    assert refused.value.code is errors.BACKUP_REGION_REFUSED
