"""SQL for alarms and their delivery outbox (docs/design.md, "Alarms").

Every statement about the ``alarm`` and ``alarm_delivery`` tables lives here and nothing else:
no sealing, auditing or sending. De-duplication rests on the unique ``active_key``; the outbox's
claims are compare-and-set updates whose ``rowcount`` says which process won.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Connection, and_, func, insert, or_, select, true, update

from hearth.storage.sql import tables as t

__all__ = ["AlarmRow", "DeliveryRow", "SqlAlarms"]

_A = t.alarm
_D = t.alarm_delivery


@dataclass(frozen=True, slots=True)
class AlarmRow:
    alarm_id: str
    kind: str
    severity: str
    subject: str
    active_key: str | None
    summary: str
    details: str
    state: str
    count: int
    first_seen_us: int
    last_seen_us: int
    notices: int
    last_notified_us: int | None
    ack_by: str | None
    ack_us: int | None
    ack_note: bytes | None
    resolved_by: str | None
    resolved_us: int | None
    resolve_note: bytes | None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    delivery_id: int
    alarm_id: str
    sink: str
    notice: int
    state: str
    attempts: int
    created_us: int
    next_attempt_us: int
    claimed_until_us: int | None
    last_attempt_us: int | None
    delivered_us: int | None
    last_error: str | None


def _blob(value: object) -> bytes | None:
    return bytes(value) if value is not None else None  # type: ignore[call-overload]


def _alarm(row: object) -> AlarmRow:
    m = row._mapping  # type: ignore[attr-defined]
    return AlarmRow(
        alarm_id=m["alarm_id"],
        kind=m["kind"],
        severity=m["severity"],
        subject=m["subject"],
        active_key=m["active_key"],
        summary=m["summary"],
        details=m["details"],
        state=m["state"],
        count=int(m["count"]),
        first_seen_us=int(m["first_seen_us"]),
        last_seen_us=int(m["last_seen_us"]),
        notices=int(m["notices"]),
        last_notified_us=m["last_notified_us"],
        ack_by=m["ack_by"],
        ack_us=m["ack_us"],
        ack_note=_blob(m["ack_note"]),
        resolved_by=m["resolved_by"],
        resolved_us=m["resolved_us"],
        resolve_note=_blob(m["resolve_note"]),
    )


def _delivery(row: object) -> DeliveryRow:
    m = row._mapping  # type: ignore[attr-defined]
    return DeliveryRow(
        delivery_id=int(m["delivery_id"]),
        alarm_id=m["alarm_id"],
        sink=m["sink"],
        notice=int(m["notice"]),
        state=m["state"],
        attempts=int(m["attempts"]),
        created_us=int(m["created_us"]),
        next_attempt_us=int(m["next_attempt_us"]),
        claimed_until_us=m["claimed_until_us"],
        last_attempt_us=m["last_attempt_us"],
        delivered_us=m["delivered_us"],
        last_error=m["last_error"],
    )


class SqlAlarms:
    """Statements over the alarm tables; every method runs inside the caller's transaction."""

    # -- alarms -----------------------------------------------------------------------------
    def active(self, conn: Connection, active_key: str) -> AlarmRow | None:
        """The open or acknowledged alarm with this key, locked for the transaction."""
        row = conn.execute(
            select(_A).where(_A.c.active_key == active_key).with_for_update()
        ).first()
        return _alarm(row) if row is not None else None

    def get(self, conn: Connection, alarm_id: str, *, for_update: bool = False) -> AlarmRow | None:
        query = select(_A).where(_A.c.alarm_id == alarm_id)
        row = conn.execute(query.with_for_update() if for_update else query).first()
        return _alarm(row) if row is not None else None

    def ids_with_prefix(self, conn: Connection, prefix: str, *, limit: int = 2) -> list[str]:
        """Alarm ids starting with ``prefix`` (lower-case hex, so no LIKE wildcard in it)."""
        query = (
            select(_A.c.alarm_id)
            .where(_A.c.alarm_id.startswith(prefix, autoescape=True))
            .order_by(_A.c.alarm_id)
            .limit(limit)
        )
        return [str(alarm_id) for alarm_id in conn.execute(query).scalars()]

    def insert(self, conn: Connection, row: AlarmRow) -> None:
        conn.execute(
            insert(_A).values(
                alarm_id=row.alarm_id,
                kind=row.kind,
                severity=row.severity,
                subject=row.subject,
                active_key=row.active_key,
                summary=row.summary,
                details=row.details,
                state=row.state,
                count=row.count,
                first_seen_us=row.first_seen_us,
                last_seen_us=row.last_seen_us,
                notices=row.notices,
                last_notified_us=row.last_notified_us,
            )
        )

    def repeat(
        self,
        conn: Connection,
        alarm_id: str,
        *,
        severity: str,
        summary: str,
        details: str,
        last_seen_us: int,
        notified_us: int | None,
    ) -> None:
        """Count one more occurrence; ``notified_us`` when it is also sent again."""
        values: dict[str, object] = {
            "count": _A.c.count + 1,
            "severity": severity,
            "summary": summary,
            "details": details,
            "last_seen_us": last_seen_us,
        }
        if notified_us is not None:
            values["notices"] = _A.c.notices + 1
            values["last_notified_us"] = notified_us
        conn.execute(update(_A).where(_A.c.alarm_id == alarm_id).values(values))

    def acknowledge(
        self, conn: Connection, alarm_id: str, *, by: str, at_us: int, note: bytes | None
    ) -> int:
        done = conn.execute(
            update(_A)
            .where(_A.c.alarm_id == alarm_id, _A.c.state == "open")
            .values(state="acknowledged", ack_by=by, ack_us=at_us, ack_note=note)
        )
        return int(done.rowcount)

    def sealed_notes(self, conn: Connection) -> list[tuple[str, str, bytes]]:
        """``(alarm id, transition, sealed note)`` of every stored note (key management)."""
        rows = conn.execute(
            select(_A.c.alarm_id, _A.c.ack_note, _A.c.resolve_note).where(
                or_(_A.c.ack_note.is_not(None), _A.c.resolve_note.is_not(None))
            )
        )
        out: list[tuple[str, str, bytes]] = []
        for alarm_id, ack, resolved in rows:
            if ack is not None:
                out.append((alarm_id, "acknowledge", bytes(ack)))
            if resolved is not None:
                out.append((alarm_id, "resolve", bytes(resolved)))
        return out

    def replace_note(
        self, conn: Connection, alarm_id: str, transition: str, *, old: bytes, new: bytes
    ) -> bool:
        """Swap a re-sealed note in (``hearth keys reseal``), if it is still the same note."""
        column = _A.c.ack_note if transition == "acknowledge" else _A.c.resolve_note
        done = conn.execute(
            update(_A).where(_A.c.alarm_id == alarm_id, column == old).values({column.name: new})
        )
        return bool(done.rowcount)

    def resolve(
        self, conn: Connection, alarm_id: str, *, by: str, at_us: int, note: bytes | None
    ) -> int:
        done = conn.execute(
            update(_A)
            .where(_A.c.alarm_id == alarm_id, _A.c.state.in_(("open", "acknowledged")))
            .values(
                state="resolved",
                active_key=None,
                resolved_by=by,
                resolved_us=at_us,
                resolve_note=note,
            )
        )
        return int(done.rowcount)

    def list_alarms(
        self,
        conn: Connection,
        *,
        states: Sequence[str],
        kind: str | None,
        limit: int,
    ) -> list[AlarmRow]:
        """Newest activity first."""
        conditions: list[ColumnElement[bool]] = [true()]
        if states:
            conditions.append(_A.c.state.in_(list(states)))
        if kind is not None:
            conditions.append(_A.c.kind == kind)
        rows = conn.execute(
            select(_A)
            .where(and_(*conditions))
            .order_by(_A.c.last_seen_us.desc(), _A.c.alarm_id)
            .limit(limit)
        )
        return [_alarm(r) for r in rows]

    def count_by_state(self, conn: Connection) -> dict[str, int]:
        rows = conn.execute(select(_A.c.state, func.count()).group_by(_A.c.state))
        return {state: int(n) for state, n in rows}

    # -- the delivery outbox ------------------------------------------------------------------
    def add_deliveries(
        self, conn: Connection, alarm_id: str, sinks: Sequence[str], *, notice: int, now_us: int
    ) -> None:
        if not sinks:
            return
        conn.execute(
            insert(_D),
            [
                {
                    "alarm_id": alarm_id,
                    "sink": sink,
                    "notice": notice,
                    "state": "pending",
                    "attempts": 0,
                    "created_us": now_us,
                    "next_attempt_us": now_us,
                }
                for sink in sinks
            ],
        )

    def deliveries(self, conn: Connection, alarm_ids: Sequence[str]) -> list[DeliveryRow]:
        if not alarm_ids:
            return []
        rows = conn.execute(
            select(_D).where(_D.c.alarm_id.in_(list(alarm_ids))).order_by(_D.c.delivery_id)
        )
        return [_delivery(r) for r in rows]

    def due(self, conn: Connection, *, now_us: int, limit: int) -> list[DeliveryRow]:
        rows = conn.execute(
            select(_D)
            .where(
                _D.c.state == "pending",
                _D.c.next_attempt_us <= now_us,
                or_(_D.c.claimed_until_us.is_(None), _D.c.claimed_until_us < now_us),
            )
            .order_by(_D.c.next_attempt_us, _D.c.delivery_id)
            .limit(limit)
        )
        return [_delivery(r) for r in rows]

    def claim(self, conn: Connection, delivery_id: int, *, now_us: int, until_us: int) -> bool:
        """Take the lease on one pending delivery; False if another process holds it."""
        done = conn.execute(
            update(_D)
            .where(
                _D.c.delivery_id == delivery_id,
                _D.c.state == "pending",
                or_(_D.c.claimed_until_us.is_(None), _D.c.claimed_until_us < now_us),
            )
            .values(claimed_until_us=until_us)
        )
        return int(done.rowcount) == 1

    def finish_attempt(
        self,
        conn: Connection,
        delivery_id: int,
        *,
        state: str,
        at_us: int,
        next_attempt_us: int,
        error: str | None,
    ) -> None:
        values: dict[str, object] = {
            "state": state,
            "attempts": _D.c.attempts + 1,
            "last_attempt_us": at_us,
            "next_attempt_us": next_attempt_us,
            "claimed_until_us": None,
            "last_error": error,
        }
        if state == "delivered":
            values["delivered_us"] = at_us
        conn.execute(update(_D).where(_D.c.delivery_id == delivery_id).values(values))

    def next_due_us(self, conn: Connection) -> int | None:
        value = conn.execute(
            select(func.min(_D.c.next_attempt_us)).where(_D.c.state == "pending")
        ).scalar_one_or_none()
        return None if value is None else int(value)

    def pending_count(self, conn: Connection) -> int:
        return int(
            conn.execute(
                select(func.count()).select_from(_D).where(_D.c.state == "pending")
            ).scalar_one()
        )
