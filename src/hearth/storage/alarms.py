"""The durable alarm store: de-duplication, the workflow and the delivery outbox.

``record`` turns a raised ``Alarm`` into a stored one: a new alarm when no alarm with the same
``dedup_key`` is open or acknowledged, else one more count on the active alarm. In the same
transaction it queues one notice per routed sink in the outbox (``alarm_delivery``) and, for a
new alarm, appends ``alarm.raise`` to the audit chain. Acknowledging and resolving are audited
in the transaction that makes them, with the operator's note sealed in the alarm row and in the
audit entry (free text typed during an incident may name a patient).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError as SqlIntegrityError

from hearth.audit import AuditRecord
from hearth.crypto import KeyRing
from hearth.domain import (
    Alarm,
    AlarmKind,
    AlarmState,
    Delivery,
    DeliveryState,
    HearthError,
    IntegrityError,
    Outcome,
    Random,
    Severity,
    StoredAlarm,
    can_transition,
    errors,
)
from hearth.storage.audit import AuditTrail
from hearth.storage.repository import from_us, to_us
from hearth.storage.sql.alarms import AlarmRow, DeliveryRow, SqlAlarms
from hearth.storage.sql.store import SqlStore

__all__ = ["AlarmStore", "ClaimedDelivery", "Recorded", "SinkRoute"]

ALARM_ACTOR = "system:alarms"
_SUBJECT_MAX = 160
_SUMMARY_MAX = 512
_DETAILS_MAX = 2048
_NOTE_MAX = 2000
_KINDS = frozenset(k.value for k in AlarmKind)


@dataclass(frozen=True, slots=True)
class SinkRoute:
    """A configured sink's name and the least severe alarm it is sent."""

    name: str
    min_severity: Severity

    def takes(self, severity: Severity) -> bool:
        return severity.rank >= self.min_severity.rank


@dataclass(frozen=True, slots=True)
class Recorded:
    alarm_id: str
    new: bool
    notified: bool  # notices were queued (a new alarm, a re-notification or an escalation)


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A pending delivery this process holds the lease on, with the alarm it announces."""

    delivery_id: int
    sink: str
    notice: int
    attempts: int  # made before this one
    alarm: StoredAlarm


def _details_json(details: dict[str, str]) -> str:
    """Canonical JSON of the details, shortened value by value until it fits its column."""
    clean = {str(k)[:64]: str(v)[:256] for k, v in sorted(details.items())[:32]}
    text = orjson.dumps(clean, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    while len(text) > _DETAILS_MAX and clean:
        clean.pop(next(reversed(clean)))
        text = orjson.dumps(clean, option=orjson.OPT_SORT_KEYS).decode("utf-8")
    return text


def note_aad(alarm_id: str, transition: str) -> bytes:
    """Associated data of a sealed alarm note (sealed under a ``secrets`` key)."""
    return b"hearth/alarm-note/v1\x00%s\x00%s" % (
        alarm_id.encode("ascii"),
        transition.encode("ascii"),
    )


def _us(value: int | None) -> datetime | None:
    return from_us(value) if value is not None else None


def _delivery(row: DeliveryRow) -> Delivery:
    return Delivery(
        delivery_id=row.delivery_id,
        sink=row.sink,
        notice=row.notice,
        state=DeliveryState(row.state),
        attempts=row.attempts,
        created=from_us(row.created_us),
        last_attempt=_us(row.last_attempt_us),
        delivered=_us(row.delivered_us),
        last_error=row.last_error,
    )


class AlarmStore:
    """Alarms in the database. Build it only through ``hearth.wiring``."""

    def __init__(
        self, store: SqlStore, audit: AuditTrail, keyring: KeyRing, random: Random
    ) -> None:
        self._store = store
        self._audit = audit
        self._keys = keyring
        self._random = random
        self._sql = SqlAlarms()

    # -- raising ------------------------------------------------------------------------------
    def record(
        self,
        alarm: Alarm,
        *,
        now: datetime,
        routes: Sequence[SinkRoute],
        renotify: timedelta | None,
    ) -> Recorded:
        """Store ``alarm`` (or count a repeat) and queue its notices, in one transaction.

        A repeat is sent again when its severity rises, or when the alarm is still open (not
        acknowledged: someone is on it) and ``renotify`` has passed since its last notice.
        """
        subject = alarm.subject[:_SUBJECT_MAX]
        key = f"{alarm.kind.value}|{subject}"
        summary = alarm.summary[:_SUMMARY_MAX]
        details = _details_json(alarm.details)
        now_us = to_us(now)
        # Two processes may open the same alarm at once; the loser's insert breaks the unique
        # key, and its retry finds the winner's row and counts a repeat instead.
        for _attempt in range(3):
            try:
                with self._store.write() as conn:
                    row = self._sql.active(conn, key)
                    if row is None:
                        return self._open(conn, alarm, subject, key, summary, details, now, routes)
                    return self._repeat(
                        conn, row, alarm.severity, summary, details, now_us, routes, renotify
                    )
            except SqlIntegrityError:
                continue
            except HearthError as exc:
                # ``SqlStore.write`` reports a broken unique key as a conflict.
                if exc.code is not errors.CONFLICT:
                    raise
                continue
        raise HearthError(errors.STORAGE_UNAVAILABLE, "The alarm could not be stored.")

    def _open(
        self,
        conn: Connection,
        alarm: Alarm,
        subject: str,
        key: str,
        summary: str,
        details: str,
        now: datetime,
        routes: Sequence[SinkRoute],
    ) -> Recorded:
        now_us = to_us(now)
        alarm_id = self._random.token_bytes(16).hex()
        sinks = [r.name for r in routes if r.takes(alarm.severity)]
        self._sql.insert(
            conn,
            AlarmRow(
                alarm_id=alarm_id,
                kind=alarm.kind.value,
                severity=alarm.severity.value,
                subject=subject,
                active_key=key,
                summary=summary,
                details=details,
                state=AlarmState.OPEN.value,
                count=1,
                first_seen_us=now_us,
                last_seen_us=now_us,
                notices=1 if sinks else 0,
                last_notified_us=now_us if sinks else None,
                ack_by=None,
                ack_us=None,
                ack_note=None,
                resolved_by=None,
                resolved_us=None,
                resolve_note=None,
            ),
        )
        self._sql.add_deliveries(conn, alarm_id, sinks, notice=1, now_us=now_us)
        self._audit.append_in(
            conn,
            [
                AuditRecord(
                    ts=now,
                    actor=ALARM_ACTOR,
                    actor_kind="system",
                    action="alarm.raise",
                    outcome=Outcome.SUCCESS,
                    res_type="Alarm",
                    res_id=alarm_id,
                    detail=orjson.dumps(
                        {"kind": alarm.kind.value, "severity": alarm.severity.value, "subject": key}
                    ),
                )
            ],
        )
        return Recorded(alarm_id, new=True, notified=bool(sinks))

    def _repeat(
        self,
        conn: Connection,
        row: AlarmRow,
        severity: Severity,
        summary: str,
        details: str,
        now_us: int,
        routes: Sequence[SinkRoute],
        renotify: timedelta | None,
    ) -> Recorded:
        stored = Severity(row.severity)
        escalated = severity.rank > stored.rank
        new_severity = severity if escalated else stored
        due = (
            renotify is not None
            and row.state == AlarmState.OPEN.value
            and (
                row.last_notified_us is None
                or now_us - row.last_notified_us >= int(renotify.total_seconds() * 1_000_000)
            )
        )
        sinks = [r.name for r in routes if r.takes(new_severity)] if (escalated or due) else []
        self._sql.repeat(
            conn,
            row.alarm_id,
            severity=new_severity.value,
            summary=summary,
            details=details,
            last_seen_us=now_us,
            notified_us=now_us if sinks else None,
        )
        self._sql.add_deliveries(conn, row.alarm_id, sinks, notice=row.notices + 1, now_us=now_us)
        return Recorded(row.alarm_id, new=False, notified=bool(sinks))

    # -- reading ------------------------------------------------------------------------------
    def get(self, alarm_id: str) -> StoredAlarm:
        with self._store.read() as conn:
            row = self._sql.get(conn, alarm_id)
            if row is None:
                raise HearthError(errors.ALARM_NOT_FOUND)
            deliveries = self._sql.deliveries(conn, [alarm_id])
        return self._stored(row, deliveries)

    def ids_with_prefix(self, prefix: str) -> list[str]:
        """At most two alarm ids that start with ``prefix``: enough to tell one from many."""
        with self._store.read() as conn:
            return self._sql.ids_with_prefix(conn, prefix)

    def list_alarms(
        self,
        *,
        states: Sequence[AlarmState] = (),
        kind: AlarmKind | None = None,
        limit: int = 100,
    ) -> list[StoredAlarm]:
        with self._store.read() as conn:
            rows = self._sql.list_alarms(
                conn,
                states=[s.value for s in states],
                kind=kind.value if kind is not None else None,
                limit=limit,
            )
            deliveries = self._sql.deliveries(conn, [r.alarm_id for r in rows])
        by_alarm: dict[str, list[DeliveryRow]] = {}
        for d in deliveries:
            by_alarm.setdefault(d.alarm_id, []).append(d)
        return [self._stored(r, by_alarm.get(r.alarm_id, [])) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._store.read() as conn:
            return self._sql.count_by_state(conn)

    def _open_note(self, alarm_id: str, transition: str, sealed: bytes | None) -> str | None:
        if sealed is None:
            return None
        try:
            return self._keys.open_secret(sealed, aad=note_aad(alarm_id, transition)).decode(
                "utf-8"
            )
        except IntegrityError:
            return "(this note failed its integrity check)"

    def _stored(self, row: AlarmRow, deliveries: Sequence[DeliveryRow]) -> StoredAlarm:
        # A kind this Hearth does not know (written by a newer one) is shown as it is stored.
        kind: str = AlarmKind(row.kind) if row.kind in _KINDS else row.kind
        return StoredAlarm(
            alarm_id=row.alarm_id,
            kind=kind,
            severity=Severity(row.severity),
            subject=row.subject,
            summary=row.summary,
            details={str(k): str(v) for k, v in orjson.loads(row.details).items()},
            state=AlarmState(row.state),
            count=row.count,
            first_seen=from_us(row.first_seen_us),
            last_seen=from_us(row.last_seen_us),
            notices=row.notices,
            last_notified=_us(row.last_notified_us),
            acknowledged_by=row.ack_by,
            acknowledged_at=_us(row.ack_us),
            acknowledge_note=self._open_note(row.alarm_id, "acknowledge", row.ack_note),
            resolved_by=row.resolved_by,
            resolved_at=_us(row.resolved_us),
            resolve_note=self._open_note(row.alarm_id, "resolve", row.resolve_note),
            deliveries=tuple(_delivery(d) for d in deliveries),
        )

    # -- the workflow -------------------------------------------------------------------------
    def transition(
        self,
        alarm_id: str,
        target: AlarmState,
        *,
        by: str,
        actor_kind: str,
        note: str | None,
        now: datetime,
    ) -> StoredAlarm:
        """Move an alarm to ``acknowledged`` or ``resolved``, audited with the same effect.

        A refused transition (unknown alarm, already resolved, ...) is audited as a failure
        and raised as ``ALARM_NOT_FOUND`` or ``ALARM_TRANSITION``.
        """
        action = {
            AlarmState.ACKNOWLEDGED: "alarm.acknowledge",
            AlarmState.RESOLVED: "alarm.resolve",
        }.get(target)
        if action is None:
            raise HearthError(errors.ALARM_TRANSITION)
        transition = action.removeprefix("alarm.")
        text = (note or "").strip()[:_NOTE_MAX] or None
        now_us = to_us(now)
        failure: HearthError | None = None
        with self._store.write() as conn:
            row = self._sql.get(conn, alarm_id, for_update=True)
            if row is None:
                failure = HearthError(errors.ALARM_NOT_FOUND)
            elif not can_transition(AlarmState(row.state), target):
                failure = HearthError(
                    errors.ALARM_TRANSITION,
                    f"Alarm {alarm_id} is {row.state}; it cannot become {target.value}.",
                )
            else:
                sealed = (
                    self._keys.seal_secret(
                        text.encode("utf-8"),
                        aad=note_aad(alarm_id, transition),
                        random=self._random,
                    )
                    if text is not None
                    else None
                )
                change = (
                    self._sql.acknowledge
                    if target is AlarmState.ACKNOWLEDGED
                    else self._sql.resolve
                )
                change(conn, alarm_id, by=by, at_us=now_us, note=sealed)
                self._audit.append_in(
                    conn,
                    [
                        AuditRecord(
                            ts=now,
                            actor=by,
                            actor_kind=actor_kind,
                            action=action,
                            outcome=Outcome.SUCCESS,
                            res_type="Alarm",
                            res_id=alarm_id,
                            detail=text.encode("utf-8") if text is not None else None,
                        )
                    ],
                )
        if failure is not None:
            self._audit.record(
                AuditRecord(
                    ts=now,
                    actor=by,
                    actor_kind=actor_kind,
                    action=action,
                    outcome=(
                        Outcome.NOT_FOUND
                        if failure.code is errors.ALARM_NOT_FOUND
                        else Outcome.INVALID
                    ),
                    res_type="Alarm",
                    res_id=alarm_id[:64],
                    code=failure.code.code,
                )
            )
            raise failure
        return self.get(alarm_id)

    # -- the outbox -----------------------------------------------------------------------------
    def claim_due(self, *, now: datetime, lease: timedelta, limit: int) -> list[ClaimedDelivery]:
        """Take the lease on up to ``limit`` deliveries that are due, oldest first."""
        now_us = to_us(now)
        until_us = now_us + int(lease.total_seconds() * 1_000_000)
        claimed: list[DeliveryRow] = []
        with self._store.write() as conn:
            for row in self._sql.due(conn, now_us=now_us, limit=limit):
                if self._sql.claim(conn, row.delivery_id, now_us=now_us, until_us=until_us):
                    claimed.append(row)
            alarms = {a: self._sql.get(conn, a) for a in sorted({row.alarm_id for row in claimed})}
        out: list[ClaimedDelivery] = []
        for row in claimed:
            alarm_row = alarms.get(row.alarm_id)
            if alarm_row is None:
                self.finish(row.delivery_id, now=now, ok=False, error="alarm row is missing")
                continue
            out.append(
                ClaimedDelivery(
                    row.delivery_id,
                    row.sink,
                    row.notice,
                    row.attempts,
                    self._stored(alarm_row, ()),
                )
            )
        return out

    def finish(
        self,
        delivery_id: int,
        *,
        now: datetime,
        ok: bool,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> None:
        """Record one attempt: delivered, to be retried at ``retry_at``, or given up."""
        now_us = to_us(now)
        if ok:
            state = DeliveryState.DELIVERED
        elif retry_at is not None:
            state = DeliveryState.PENDING
        else:
            state = DeliveryState.FAILED
        with self._store.write() as conn:
            self._sql.finish_attempt(
                conn,
                delivery_id,
                state=state.value,
                at_us=now_us,
                next_attempt_us=to_us(retry_at) if retry_at is not None else now_us,
                error=None if ok else (error or "failed")[:256],
            )

    def next_due(self) -> datetime | None:
        with self._store.read() as conn:
            value = self._sql.next_due_us(conn)
        return _us(value)

    def pending_deliveries(self) -> int:
        with self._store.read() as conn:
            return self._sql.pending_count(conn)
