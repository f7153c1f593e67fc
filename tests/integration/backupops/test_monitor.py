"""The backup watch of ``hearth serve``: one tick checks the policy and the RPO and verifies a
slice; a failing tick is survived."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

from hearth.domain import AlarmKind, AlarmState
from hearth.services.backup_monitor import BackupMonitor
from hearth.settings import BackupSettings, BackupTargetSettings
from hearth.targets import LocalDirectoryTarget, OfflineMediaTarget
from hearth.wiring import Container
from tests.alarm_support import service_for
from tests.integration.backupops.support import Backups, policy_for
from tests.integration.backupops.test_schedule import MetaState
from tests.support import FixedClock, Instance, make_instance
from tests.unit.backupfmt.helpers import T0


def test_a_tick_checks_policy_rpo_and_verifies(
    tmp_path: Path, inst: Instance, clock: FixedClock
) -> None:
    here = LocalDirectoryTarget(tmp_path / "here", label="here", region="primary")
    away = LocalDirectoryTarget(tmp_path / "away", label="away", region="offsite")
    backups = Backups(tmp_path / "spool")
    backups.add([here, away], when=T0)
    backups.add([here], when=T0 + timedelta(hours=1))
    clock.current = T0 + timedelta(hours=2)
    alarms = service_for(inst, [], clock)
    targets = [here, away]
    monitor = BackupMonitor(
        policy=policy_for(targets, monitor_minutes=60),
        rpo_hours=24,
        targets=lambda: targets,
        verifier=lambda: backups.verifier,
        state=MetaState(inst),
        alarms=alarms,
        clock=clock,
    )
    assert monitor.tick() == {
        "policy_ok": False,
        "findings": 2,  # the newest backup has one copy, and none off-site
        "verified": 1,  # a seventh of the copies per hour-long tick of a 7-day period, at least 1
        "verify_failures": 0,
    }
    alarms.process()
    assert [a.kind for a in alarms.list_alarms(states=[AlarmState.OPEN])] == [
        AlarmKind.POLICY_OFFSITE_MISSING
    ]
    clock.advance(hours=30)
    backups.add([here, away], when=clock.now())
    targets.append(
        OfflineMediaTarget(tmp_path / "absent", media_id="m", label="vault", region="primary")
    )
    result = monitor.tick()
    assert result["policy_ok"] is False  # the unplugged medium is named
    # A broken target list is logged and survived by the thread.
    monitor_broken = BackupMonitor(
        policy=policy_for(targets, monitor_minutes=0.001),
        rpo_hours=24,
        targets=lambda: 1 / 0,  # type: ignore[arg-type, return-value]
        verifier=lambda: backups.verifier,
        state=MetaState(inst),
        alarms=alarms,
        clock=clock,
        first_delay_seconds=0,
    )
    monitor_broken.start()
    monitor_broken.close()


def test_hearth_serve_starts_the_watch_only_with_targets(tmp_path: Path) -> None:
    instance = make_instance(tmp_path / "home", None)
    try:
        assert instance.container.start_backup_monitor() is None  # nothing configured
        settings = instance.container.settings
        configured = dataclasses.replace(
            settings,
            backup=BackupSettings(
                targets=(
                    BackupTargetSettings(
                        name="here", kind="local", region="local", path=tmp_path / "b"
                    ),
                )
            ),
        )
        container = Container(configured, alarm_worker=False)
        try:
            monitor = container.start_backup_monitor()
            assert isinstance(monitor, BackupMonitor)
            monitor.close()
        finally:
            container.close()
    finally:
        instance.container.close()
