"""Scheduled verification: every copy of every backup re-read within ``verify_period_days``
(restic's ``check --read-data-subset``, but as a rolling pass with a deadline).

The copies on all targets, ordered by (backup id, target), form a **pass**. Each run verifies
the next slice after a cursor: the signature and consistency of the manifest, its link to the
previous backup on the same target, and every segment's length and SHA-256 (the ciphertext is
read in full; nothing is decrypted, so no backup identity is needed). The slice is sized so
that the pass ends by its deadline: ``ceil(remaining * since_last_run / time_left)``, and all
that remains once the deadline is near. Backup ids sort by creation time, so a backup taken
during a pass sorts after the cursor and is covered by the same pass.

Progress lives in the instance database (``instance_meta``, apart from the targets):
``{"v": 1, "pass_started", "cursor", "last_run", "verified", "failed"}``. A failure raises
``backup.verify_failed`` naming the backup and the target; a later success resolves it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from hearth.backupfmt import BackupKind, ManifestVerifier, Status, inspect_backup, open_manifest
from hearth.backupfmt.manifest import format_time
from hearth.backupfmt.naming import (
    MANIFEST_PREFIX,
    backup_id_from_manifest_name,
    manifest_object_name,
)
from hearth.domain import Alarm, AlarmKind, HearthError, IntegrityError, Severity
from hearth.domain.errors import BACKUP_FORMAT, TARGET_OBJECT_NOT_FOUND
from hearth.services.backup_policy import AlarmControl

if TYPE_CHECKING:
    # Only for annotations: importing hearth.targets loads boto3 and paramiko.
    from hearth.targets import BackupTarget

__all__ = ["PROGRESS_KEY", "ScheduledRun", "StateStore", "run_scheduled_verification"]

PROGRESS_KEY = "backup.verify"
VERIFIER = "system:backup-verify"


class StateStore(Protocol):
    """Small named values kept in the instance database (``instance_meta``)."""

    def get(self, name: str) -> str | None: ...

    def set(self, name: str, value: str) -> None: ...


@dataclass(slots=True)
class ScheduledRun:
    pass_started: datetime
    deadline: datetime
    total: int
    remaining_before: int
    checked: list[dict[str, Any]] = field(default_factory=list)
    unreachable: list[dict[str, str]] = field(default_factory=list)
    pass_completed: bool = False

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [c for c in self.checked if not c["ok"]]

    @property
    def ok(self) -> bool:
        return not self.failures and not self.unreachable

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "pass_started": format_time(self.pass_started),
            "deadline": format_time(self.deadline),
            "copies_in_pass": self.total,
            "remaining_before_run": self.remaining_before,
            "checked": self.checked,
            "unreachable": self.unreachable,
            "pass_completed": self.pass_completed,
        }


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _load(state: StateStore) -> dict[str, Any]:
    raw = state.get(PROGRESS_KEY)
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) and value.get("v") == 1 else {}


def _verify_copy(target: BackupTarget, backup_id: str, verifier: ManifestVerifier) -> list[str]:
    """Problems with one copy (empty: it verifies)."""
    report = inspect_backup(target, backup_id, verifier)
    problems = [
        f"{c.check} {c.subject}: {c.detail}".strip()
        for c in report.checks
        if c.status is Status.FAILED
    ]
    manifest = report.manifest
    if (
        manifest is not None
        and manifest.previous is not None
        and manifest.kind is not BackupKind.FULL
    ):
        link = manifest.previous
        try:
            data = target.get_bytes(manifest_object_name(link.backup_id))
            previous = open_manifest(data, verifier).manifest
        except IntegrityError:
            problems.append(f"chain.link: the previous backup {link.backup_id} does not verify")
        except HearthError as exc:
            if exc.code is not TARGET_OBJECT_NOT_FOUND and exc.code is not BACKUP_FORMAT:
                raise
            problems.append(f"chain.link: the previous backup {link.backup_id} is missing")
        else:
            if previous.manifest_id != link.manifest_id:
                problems.append(f"chain.link: {link.backup_id} is not the backup named")
    return problems


def run_scheduled_verification(
    targets: Iterable[BackupTarget],
    verifier: ManifestVerifier,
    state: StateStore,
    *,
    period: timedelta,
    now: datetime,
    interval: timedelta = timedelta(days=1),
    alarms: AlarmControl | None = None,
    max_copies: int | None = None,
) -> ScheduledRun:
    """Verify the next slice of the current pass; start a new pass when it is done.

    ``interval`` is how often runs are expected (``hearth serve``'s timer, or a daily cron
    job); it sizes the first slice, later ones use the time since the previous run."""
    targets = list(targets)
    progress = _load(state)
    unreachable: list[dict[str, str]] = []
    pairs: list[tuple[str, str]] = []
    by_label = {t.label: t for t in targets}
    for target in targets:
        try:
            names = target.list_names(MANIFEST_PREFIX)
        except HearthError as exc:
            unreachable.append({"target": target.label, "error": f"{exc.detail} [{exc.code.code}]"})
            continue
        pairs.extend(
            (bid, target.label)
            for name in names
            if (bid := backup_id_from_manifest_name(name)) is not None
        )
    pairs.sort()
    started = _parse_time(progress.get("pass_started"))
    last_run = _parse_time(progress.get("last_run"))
    cursor = progress.get("cursor")
    if started is None or started > now:  # no progress yet, or the clock went back
        started, cursor = now, None
    deadline = started + period
    remaining = [p for p in pairs if cursor is None or f"{p[0]}|{p[1]}" > str(cursor)]
    time_left = (deadline - now).total_seconds()
    since = (now - last_run if last_run is not None else interval).total_seconds()
    # Enough that the pass ends by its deadline if runs keep coming at this pace.
    share = 1.0 if time_left <= since else since / time_left
    budget = max(math.ceil(len(remaining) * share), 1 if remaining else 0)
    if max_copies is not None:
        budget = min(budget, max_copies)
    run = ScheduledRun(started, deadline, len(pairs), len(remaining), unreachable=unreachable)
    verified = int(progress.get("verified", 0)) if cursor is not None else 0
    failed = int(progress.get("failed", 0)) if cursor is not None else 0
    for backup_id, label in remaining[:budget]:
        try:
            problems = _verify_copy(by_label[label], backup_id, verifier)
        except HearthError as exc:
            # The target went away mid-run: stop here and resume from this copy next time.
            unreachable.append({"target": label, "error": f"{exc.detail} [{exc.code.code}]"})
            break
        subject = f"backup:{backup_id}@{label}"
        run.checked.append(
            {"backup_id": backup_id, "target": label, "ok": not problems, "problems": problems}
        )
        cursor = f"{backup_id}|{label}"
        verified += 1
        if problems:
            failed += 1
            if alarms is not None:
                alarms.raise_alarm(
                    Alarm(
                        AlarmKind.BACKUP_VERIFY_FAILED,
                        Severity.CRITICAL,
                        subject,
                        "A stored backup failed scheduled verification.",
                        {"backup_id": backup_id, "target": label, "first": problems[0][:200]},
                    )
                )
        elif alarms is not None:
            alarms.clear_alarm(
                AlarmKind.BACKUP_VERIFY_FAILED,
                subject,
                by=VERIFIER,
                note="the copy verified in a later scheduled run",
            )
    if (remaining and cursor == f"{remaining[-1][0]}|{remaining[-1][1]}" and not unreachable) or (
        not remaining and not unreachable
    ):
        run.pass_completed = True
    record: dict[str, Any] = {"v": 1, "last_run": format_time(now)}
    if run.pass_completed:
        # The next pass starts now; its slices are sized by the time between runs, so each
        # copy is read about once per period, not back to back.
        record.update({"pass_started": format_time(now), "cursor": None, "verified": 0})
        record.update({"failed": 0, "previous_pass": {"verified": verified, "failed": failed}})
    else:
        record.update({"pass_started": format_time(started), "cursor": cursor})
        record.update({"verified": verified, "failed": failed})
    state.set(PROGRESS_KEY, json.dumps(record, separators=(",", ":")))
    return run
