"""Alarms a support team can act on (HIPAA 164.312(c), 164.308(a)(1)(ii)(D), 164.308(a)(6)).

``AlarmService`` is the ``AlarmRaiser`` every part of Hearth calls. ``raise_alarm`` only puts
the alarm on an in-memory queue and returns: it never blocks the request that raised it and
never raises into it. A background worker then records it (de-duplicated, ``AlarmStore``),
which queues one notice per sink in the durable outbox, and delivers due notices: a failure is
logged, recorded on the delivery and retried with exponential back-off up to a limit. Other
processes' notices left in the outbox (a command that exited, a crash) are picked up too.

The workflow (acknowledge, resolve, each with who, when and a note, each audited) and the
``backup.stale`` check (``check_backup_stale``) live here as well. docs/design.md, "Alarms".
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from hearth.domain import (
    Alarm,
    AlarmKind,
    AlarmRaiser,
    AlarmState,
    Clock,
    HearthError,
    Principal,
    Severity,
    StoredAlarm,
    errors,
)
from hearth.notify import Notice, Sink
from hearth.storage.alarms import AlarmStore, SinkRoute

__all__ = [
    "AlarmService",
    "DeliveryPolicy",
    "DeliveryRun",
    "alarm_document",
    "check_backup_stale",
    "iso_seconds",
]

log = logging.getLogger("hearth.alarm")

_ALARM_ID = re.compile(r"[0-9a-f]{32}")
_ALARM_ID_PREFIX = re.compile(r"[0-9a-f]{6,31}")
_QUEUE_LIMIT = 10_000
_RETRY_LIMIT = 1_000


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """Re-notification and retry timing (``[alarms]`` in hearth.toml)."""

    renotify: timedelta | None = timedelta(hours=1)
    max_attempts: int = 8
    retry_base: timedelta = timedelta(seconds=5)
    retry_max: timedelta = timedelta(minutes=15)
    #: How long a worker holds a claimed delivery before another process may take it over.
    lease: timedelta = timedelta(minutes=2)
    #: Seconds an idle worker waits before looking at the outbox again.
    poll_seconds: float = 5.0

    def retry_delay(self, attempts_made: int) -> timedelta:
        """Exponential back-off: base, 2 x base, 4 x base, ... capped at ``retry_max``."""
        factor = 1 << max(0, min(attempts_made - 1, 30))
        return min(self.retry_base * factor, self.retry_max)


@dataclass(frozen=True, slots=True)
class DeliveryRun:
    delivered: int = 0
    failed: int = 0  # attempts that failed (retried later or given up)


def _as_json(alarm: Alarm) -> str:
    return orjson.dumps(
        {
            "kind": alarm.kind.value,
            "severity": alarm.severity.value,
            "subject": alarm.subject,
            "summary": alarm.summary,
            "details": alarm.details,
        },
        option=orjson.OPT_SORT_KEYS,
    ).decode("utf-8")


class AlarmService:
    """The durable alarm raiser, its delivery worker and the acknowledge/resolve workflow."""

    def __init__(
        self,
        store: AlarmStore,
        sinks: Sequence[Sink],
        *,
        clock: Clock,
        instance_id: str,
        policy: DeliveryPolicy | None = None,
        admin_roles: frozenset[str] = frozenset(),
        background: bool = True,
    ) -> None:
        """``background=False`` runs no worker thread: alarms wait on the queue until someone
        calls ``process()`` (tests drive time and delivery step by step this way)."""
        self._store = store
        self._sinks = {s.name: s for s in sinks}
        if len(self._sinks) != len(sinks):
            raise HearthError(errors.ALARM_SINK_CONFIG, "Two alarm sinks have the same name.")
        self._routes = [SinkRoute(s.name, s.min_severity) for s in sinks]
        self._clock = clock
        self._instance_id = instance_id
        self.policy = policy or DeliveryPolicy()
        self._admin_roles = admin_roles
        self._background = background
        self._pending: queue.Queue[Alarm] = queue.Queue(maxsize=_QUEUE_LIMIT)
        self._retry: list[Alarm] = []
        self._process_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    # -- AlarmRaiser ------------------------------------------------------------------------
    def raise_alarm(self, alarm: Alarm) -> None:
        """Queue ``alarm`` for the worker; never blocks, never raises."""
        try:
            self._pending.put_nowait(alarm)
        except queue.Full:
            log.error("alarm queue full; dropped alarm %s", _as_json(alarm))
            return
        except Exception as exc:  # noqa: BLE001 - raising an alarm must never fail its caller
            log.error("could not queue an alarm (%s)", type(exc).__name__)
            return
        if self._background and not self._stopping.is_set():
            try:
                self._ensure_worker()
                self._wake.set()
            except Exception as exc:  # noqa: BLE001 - as above
                log.error("could not start the alarm worker (%s)", type(exc).__name__)

    # -- the worker -----------------------------------------------------------------------------
    def _ensure_worker(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._thread_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="hearth-alarm-worker", daemon=True
                )
                self._thread.start()

    def start(self) -> None:
        """Start the worker now (``hearth serve``), so notices left in the outbox by other
        processes are delivered even before this process raises anything."""
        if self._background:
            self._ensure_worker()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.process()
            except Exception as exc:  # noqa: BLE001 - the worker must outlive one bad round
                log.error("alarm worker round failed (%s)", type(exc).__name__)
            self._wake.wait(self._idle_seconds())
            self._wake.clear()

    def _idle_seconds(self) -> float:
        wait = self.policy.poll_seconds
        try:
            due = self._store.next_due()
        except HearthError:
            return wait
        if due is not None:
            wait = min(wait, max(0.05, (due - self._clock.now()).total_seconds()))
        return wait

    def process(self) -> DeliveryRun:
        """Record every queued alarm, then deliver every notice that is due. Thread-safe."""
        with self._process_lock:
            self._record_pending()
            return self._deliver_due()

    def _record_pending(self) -> None:
        batch, self._retry = self._retry, []
        while True:
            try:
                batch.append(self._pending.get_nowait())
            except queue.Empty:
                break
        for index, alarm in enumerate(batch):
            try:
                self._store.record(
                    alarm,
                    now=self._clock.now(),
                    routes=self._routes,
                    renotify=self.policy.renotify,
                )
            except Exception as exc:  # noqa: BLE001 - keep the alarm and try again later
                # The store is unreachable: the log still gets the alarm, and it is retried.
                log.error(
                    "could not store alarm (%s), will retry: %s",
                    type(exc).__name__,
                    _as_json(alarm),
                )
                self._retry = batch[index:][-_RETRY_LIMIT:]
                return

    def _deliver_due(self) -> DeliveryRun:
        delivered = failed = 0
        while True:
            claimed = self._store.claim_due(
                now=self._clock.now(), lease=self.policy.lease, limit=20
            )
            if not claimed:
                return DeliveryRun(delivered, failed)
            for item in claimed:
                sink = self._sinks.get(item.sink)
                now = self._clock.now()
                if sink is None:
                    self._store.finish(
                        item.delivery_id, now=now, ok=False, error="sink is no longer configured"
                    )
                    failed += 1
                    continue
                notice = Notice(
                    item.alarm, item.notice, item.delivery_id, self._instance_id, sent=now
                )
                error: str | None = None
                try:
                    sink.send(notice)
                except HearthError as exc:
                    error = exc.detail
                except Exception as exc:  # noqa: BLE001 - a sink bug is a failed delivery
                    error = f"unexpected {type(exc).__name__}"
                if error is None:
                    self._store.finish(item.delivery_id, now=self._clock.now(), ok=True)
                    delivered += 1
                    continue
                failed += 1
                attempts = item.attempts + 1
                retry_at = (
                    self._clock.now() + self.policy.retry_delay(attempts)
                    if attempts < self.policy.max_attempts
                    else None
                )
                self._store.finish(
                    item.delivery_id,
                    now=self._clock.now(),
                    ok=False,
                    error=error,
                    retry_at=retry_at,
                )
                log.warning(
                    "alarm %s: delivery %d to %s failed (attempt %d of %d%s): %s",
                    item.alarm.alarm_id,
                    item.delivery_id,
                    item.sink,
                    attempts,
                    self.policy.max_attempts,
                    "" if retry_at is not None else ", giving up",
                    error,
                )

    def close(self, timeout: float = 30.0) -> None:
        """Stop the worker, then record what is queued and try what is due once, so a command
        that raised an alarm delivers it before it exits (failures stay in the outbox)."""
        self._stopping.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        try:
            self.process()
        except Exception as exc:  # noqa: BLE001 - closing must not fail
            log.error("could not flush alarms at exit (%s)", type(exc).__name__)

    # -- the workflow -----------------------------------------------------------------------------
    def require_admin(self, principal: Principal) -> None:
        """Alarms are for administrators: they name records and users under attack."""
        if not self._admin_roles & principal.roles:
            raise HearthError(errors.FORBIDDEN)

    def list_alarms(
        self,
        *,
        states: Sequence[AlarmState] = (),
        kind: AlarmKind | None = None,
        limit: int = 100,
    ) -> list[StoredAlarm]:
        return self._store.list_alarms(states=states, kind=kind, limit=max(1, min(limit, 1000)))

    def full_id(self, alarm_id: str) -> str:
        """The alarm id that ``alarm_id`` names: the whole id, or (as git takes a commit) a
        unique prefix of at least six of its hex digits."""
        alarm_id = alarm_id.strip().lower()
        if _ALARM_ID.fullmatch(alarm_id):
            return alarm_id
        if not _ALARM_ID_PREFIX.fullmatch(alarm_id):
            raise HearthError(
                errors.ALARM_NOT_FOUND,
                "No such alarm: give its whole id or at least six of its first hex digits.",
            )
        found = self._store.ids_with_prefix(alarm_id)
        if not found:
            raise HearthError(errors.ALARM_NOT_FOUND)
        if len(found) > 1:
            raise HearthError(errors.ALARM_AMBIGUOUS)
        return found[0]

    def get(self, alarm_id: str) -> StoredAlarm:
        return self._store.get(self.full_id(alarm_id))

    def acknowledge(
        self, alarm_id: str, *, by: str, note: str | None = None, actor_kind: str = "user"
    ) -> StoredAlarm:
        """open -> acknowledged: someone is on it. Re-notification stops; counting goes on."""
        return self._transition(alarm_id, AlarmState.ACKNOWLEDGED, by, note, actor_kind)

    def resolve(
        self, alarm_id: str, *, by: str, note: str | None = None, actor_kind: str = "user"
    ) -> StoredAlarm:
        """open or acknowledged -> resolved. A later repeat opens a new alarm."""
        return self._transition(alarm_id, AlarmState.RESOLVED, by, note, actor_kind)

    def clear_alarm(self, kind: AlarmKind, subject: str, *, by: str, note: str) -> int:
        """Resolve the active alarms of ``kind`` about ``subject``: the condition they reported
        has ended (a check found the copy policy met again, a backup succeeded). Resolved by
        ``by`` as a system actor, with ``note``; returns how many were resolved."""
        with self._process_lock:
            self._record_pending()
        active = self._store.list_alarms(
            states=(AlarmState.OPEN, AlarmState.ACKNOWLEDGED), kind=kind, limit=1000
        )
        cleared = 0
        for alarm in active:
            if alarm.subject == subject:
                self._transition(alarm.alarm_id, AlarmState.RESOLVED, by, note, "system")
                cleared += 1
        return cleared

    def _transition(
        self, alarm_id: str, target: AlarmState, by: str, note: str | None, actor_kind: str
    ) -> StoredAlarm:
        return self._store.transition(
            self.full_id(alarm_id),
            target,
            by=by,
            actor_kind=actor_kind,
            note=note,
            now=self._clock.now(),
        )

    def counts(self) -> dict[str, int]:
        return self._store.counts()

    def pending_deliveries(self) -> int:
        return self._store.pending_deliveries()


def iso_seconds(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def alarm_document(alarm: StoredAlarm, *, deliveries: bool = True) -> dict[str, Any]:
    """An alarm as the command line (``--json``) and the administrators' API show it. Notes are
    included: only administrators see this."""
    out: dict[str, Any] = {
        "id": alarm.alarm_id,
        "kind": str(alarm.kind),
        "severity": alarm.severity.value,
        "subject": alarm.subject,
        "summary": alarm.summary,
        "details": alarm.details,
        "state": alarm.state.value,
        "count": alarm.count,
        "first_seen": iso_seconds(alarm.first_seen),
        "last_seen": iso_seconds(alarm.last_seen),
        "notices": alarm.notices,
        "last_notified": iso_seconds(alarm.last_notified),
        "acknowledged": None
        if alarm.acknowledged_by is None
        else {
            "by": alarm.acknowledged_by,
            "at": iso_seconds(alarm.acknowledged_at),
            "note": alarm.acknowledge_note,
        },
        "resolved": None
        if alarm.resolved_by is None
        else {
            "by": alarm.resolved_by,
            "at": iso_seconds(alarm.resolved_at),
            "note": alarm.resolve_note,
        },
    }
    if deliveries:
        out["deliveries"] = [
            {
                "id": d.delivery_id,
                "sink": d.sink,
                "notice": d.notice,
                "state": d.state.value,
                "attempts": d.attempts,
                "last_attempt": iso_seconds(d.last_attempt),
                "delivered": iso_seconds(d.delivered),
                "last_error": d.last_error,
            }
            for d in alarm.deliveries
        ]
    return out


def check_backup_stale(
    alarms: AlarmRaiser,
    *,
    last_success: datetime | None,
    now: datetime,
    rpo: timedelta,
    subject: str = "backups",
) -> bool:
    """Raise ``backup.stale`` when no backup succeeded within the RPO; True if it did.

    For the backup service and its scheduler: call it after every backup run (and on a timer)
    with the newest successful backup's time (``None``: there has never been one) and
    ``timedelta(hours=settings.alarms.backup_rpo_hours)``. ``subject`` names what is stale
    (``backups`` for the instance, ``target:NAME`` for one target); repeats de-duplicate on it.
    """
    if last_success is not None and now - last_success <= rpo:
        return False
    age = "never" if last_success is None else f"{(now - last_success).total_seconds() / 3600:.1f}"
    alarms.raise_alarm(
        Alarm(
            AlarmKind.BACKUP_STALE,
            Severity.CRITICAL,
            subject,
            "No backup succeeded within the recovery point objective."
            if last_success is not None
            else "No backup has ever succeeded.",
            {
                "rpo_hours": f"{rpo.total_seconds() / 3600:g}",
                "hours_since_last_success": age,
            },
        )
    )
    return True
