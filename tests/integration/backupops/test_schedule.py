"""Scheduled verification: a rolling pass reads every copy of every backup within the period,
progress survives between runs (in the instance database), and a damaged copy raises
``backup.verify_failed`` until a later run finds it whole again."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from hearth.backupfmt import manifest_object_name
from hearth.domain import AlarmKind, AlarmState
from hearth.services.backup_schedule import PROGRESS_KEY, run_scheduled_verification
from hearth.targets import LocalDirectoryTarget
from tests.alarm_support import service_for
from tests.integration.backupops.support import Backups
from tests.support import FixedClock, Instance
from tests.unit.backupfmt.helpers import T0


class MetaState:
    """The instance database's ``instance_meta``, as the services' StateStore."""

    def __init__(self, inst: Instance) -> None:
        self._store = inst.container.store

    def get(self, name: str) -> str | None:
        with self._store.read() as conn:
            return self._store.meta(conn).get(name)

    def set(self, name: str, value: str) -> None:
        with self._store.write() as conn:
            self._store.set_meta(conn, name, value)


def test_every_copy_is_read_within_the_period(
    tmp_path: Path, inst: Instance, clock: FixedClock
) -> None:
    here = LocalDirectoryTarget(tmp_path / "here", label="here", region="primary")
    away = LocalDirectoryTarget(tmp_path / "away", label="away", region="offsite")
    backups = Backups(tmp_path / "spool")
    for _ in range(12):
        backups.add([here, away])
    state = MetaState(inst)
    alarms = service_for(inst, [], clock)
    period = timedelta(days=7)
    now = T0 + timedelta(days=1)
    seen: dict[tuple[str, str], list[int]] = {}
    sizes = []
    # Hourly runs for two periods; a new backup arrives every day of the first week.
    for hour in range(24 * 14):
        when = now + timedelta(hours=hour)
        if hour % 24 == 0 and hour < 24 * 7:
            backups.add([here, away], when=when - timedelta(minutes=5))
        run = run_scheduled_verification(
            [here, away],
            backups.verifier,
            state,
            period=period,
            now=when,
            interval=timedelta(hours=1),
            alarms=alarms,
        )
        assert run.ok
        sizes.append(len(run.checked))
        for check in run.checked:
            seen.setdefault((check["backup_id"], check["target"]), []).append(hour)
    copies = {(b, t) for b in backups.ids for t in ("here", "away")}
    assert set(seen) == copies
    # Each copy was read again within every period (allowing the one run of slack).
    for hours in seen.values():
        gaps = [b - a for a, b in zip([0, *hours], [*hours, 24 * 14], strict=True)]
        assert max(gaps) <= 24 * 7 + 1, hours
    # The work is spread out, not done in one burst.
    assert max(sizes) <= 3
    progress = json.loads(state.get(PROGRESS_KEY) or "{}")
    assert progress["v"] == 1
    assert progress["last_run"].startswith(
        (now + timedelta(hours=24 * 14 - 1)).strftime("%Y-%m-%d")
    )


def test_a_damaged_copy_raises_and_a_repaired_one_resolves(
    tmp_path: Path, inst: Instance, clock: FixedClock
) -> None:
    here = LocalDirectoryTarget(tmp_path / "here", label="here", region="primary")
    backups = Backups(tmp_path / "spool")
    full = backups.add([here])
    inc = backups.add([here])
    state = MetaState(inst)
    alarms = service_for(inst, [], clock)
    segment = here.root / inc.segments[0].name
    good = segment.read_bytes()
    segment.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    run = run_scheduled_verification(
        [here], backups.verifier, state, period=timedelta(days=1), now=T0 + timedelta(days=1)
    )
    assert run.pass_completed  # a first run with one day's period reads everything
    assert [c["ok"] for c in run.checked] == [True, False]
    assert run.failures[0]["problems"][0].startswith("segment.hash")
    run = run_scheduled_verification(
        [here],
        backups.verifier,
        state,
        period=timedelta(days=1),
        now=T0 + timedelta(days=2),
        alarms=alarms,
    )
    alarms.process()
    (alarm,) = alarms.list_alarms(states=[AlarmState.OPEN])
    assert (alarm.kind, alarm.subject) == (
        AlarmKind.BACKUP_VERIFY_FAILED,
        f"backup:{inc.backup_id}@here",
    )
    segment.write_bytes(good)
    (here.root / manifest_object_name(full.backup_id)).unlink()
    run = run_scheduled_verification(
        [here],
        backups.verifier,
        state,
        period=timedelta(days=1),
        now=T0 + timedelta(days=3),
        alarms=alarms,
    )
    (check,) = run.checked
    assert check["problems"] == [f"chain.link: the previous backup {full.backup_id} is missing"]
    # The manifest is put back: the next run passes and resolves the alarm.
    here.put_bytes(manifest_object_name(full.backup_id), backups.stored[full.backup_id])
    run = run_scheduled_verification(
        [here],
        backups.verifier,
        state,
        period=timedelta(days=1),
        now=T0 + timedelta(days=4),
        alarms=alarms,
    )
    assert run.ok
    alarms.process()
    assert alarms.list_alarms(states=[AlarmState.OPEN]) == []
