"""``backup.stale``: raised when no backup succeeded within the RPO, de-duplicated per subject."""

from __future__ import annotations

from datetime import timedelta

from hearth.domain import AlarmKind, Severity
from hearth.services.alarms import check_backup_stale
from tests.alarm_support import service_for
from tests.support import FixedClock, Instance


def test_stale_backups_raise_one_alarm_per_subject(inst: Instance, clock: FixedClock) -> None:
    service = service_for(inst, [], clock)
    rpo = timedelta(hours=24)
    now = clock.now()
    assert not check_backup_stale(service, last_success=now - timedelta(hours=23), now=now, rpo=rpo)
    service.process()
    assert service.list_alarms() == []
    assert check_backup_stale(service, last_success=now - timedelta(hours=30), now=now, rpo=rpo)
    assert check_backup_stale(service, last_success=now - timedelta(hours=31), now=now, rpo=rpo)
    assert check_backup_stale(service, last_success=None, now=now, rpo=rpo, subject="target:s3")
    service.process()
    alarms = {a.subject: a for a in service.list_alarms()}
    assert set(alarms) == {"backups", "target:s3"}
    stale = alarms["backups"]
    assert (stale.kind, stale.severity, stale.count) == (
        AlarmKind.BACKUP_STALE,
        Severity.CRITICAL,
        2,
    )
    assert stale.details == {"rpo_hours": "24", "hours_since_last_success": "31.0"}
    assert alarms["target:s3"].details["hours_since_last_success"] == "never"
    assert alarms["target:s3"].summary == "No backup has ever succeeded."
