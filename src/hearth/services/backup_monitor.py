"""The backup watch inside ``hearth serve``: every ``[backup] monitor_minutes`` it checks the
copy policy and the RPO (raising or resolving ``policy.offsite_missing`` and ``backup.stale``)
and runs the next slice of scheduled verification (``backup.verify_failed``).

One daemon thread; each tick builds nothing new (targets and the verifier are given) and never
raises: a failed tick is logged by its error code and retried at the next one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from hearth.backupfmt import ManifestVerifier
from hearth.domain import Clock, HearthError
from hearth.services.backup_inventory import survey
from hearth.services.backup_policy import AlarmControl, apply_policy_alarms, check_policy
from hearth.services.backup_schedule import StateStore, run_scheduled_verification
from hearth.settings import BackupSettings

if TYPE_CHECKING:
    # Only for annotations: importing hearth.targets loads boto3 and paramiko.
    from hearth.targets import BackupTarget

__all__ = ["BackupMonitor"]

log = logging.getLogger("hearth.backup")


class BackupMonitor:
    def __init__(
        self,
        *,
        policy: BackupSettings,
        rpo_hours: float,
        targets: Callable[[], Sequence[BackupTarget]],
        verifier: Callable[[], ManifestVerifier],
        state: StateStore,
        alarms: AlarmControl,
        clock: Clock,
        first_delay_seconds: float = 60.0,
    ) -> None:
        """``first_delay_seconds``: the first round waits this long, so that starting the
        server is not slowed by listing every target."""
        self._policy = policy
        self._rpo_hours = rpo_hours
        self._targets = targets
        self._verifier = verifier
        self._state = state
        self._alarms = alarms
        self._clock = clock
        self._interval = timedelta(minutes=policy.monitor_minutes)
        self._first_delay = first_delay_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: dict[str, Any] = {}

    def tick(self) -> dict[str, Any]:
        """One round: policy and RPO, then a slice of scheduled verification."""
        now = self._clock.now()
        targets = list(self._targets())
        verifier = self._verifier()
        report = check_policy(
            self._policy, survey(targets, verifier), now=now, rpo_hours=self._rpo_hours
        )
        apply_policy_alarms(report, self._alarms, now=now)
        run = run_scheduled_verification(
            targets,
            verifier,
            self._state,
            period=timedelta(days=self._policy.verify_period_days),
            now=now,
            interval=self._interval,
            alarms=self._alarms,
        )
        self.last = {
            "policy_ok": report.ok,
            "findings": len(report.findings),
            "verified": len(run.checked),
            "verify_failures": len(run.failures),
        }
        return self.last

    def _run(self) -> None:
        if self._stop.wait(self._first_delay):
            return
        while not self._stop.is_set():
            try:
                self.tick()
            except HearthError as exc:
                log.error("backup monitor tick failed [%s]", exc.code.code)
            except Exception as exc:  # noqa: BLE001 - the watch must outlive one bad tick
                log.error("backup monitor tick failed (%s)", type(exc).__name__)
            self._stop.wait(self._interval.total_seconds())

    def start(self) -> None:
        if self._thread is None and self._interval.total_seconds() > 0:
            self._thread = threading.Thread(target=self._run, name="backup-monitor", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
