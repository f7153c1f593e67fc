"""What every sink sends: one notice of one alarm, as a versioned JSON document or as text.

The document (format ``hearth-alarm``, version 1; docs/design.md, "Sink formats") carries the
alarm's kind, severity, subject, summary, details and counts: fields that by contract name
records by type and random id and users by id, never by content, so no notice carries PHI.
Operators' notes are never sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from hearth.domain import Severity, StoredAlarm

__all__ = [
    "NOTICE_FORMAT",
    "NOTICE_VERSION",
    "Notice",
    "Sink",
    "notice_document",
    "notice_json",
    "notice_subject",
    "notice_text",
]

NOTICE_FORMAT = "hearth-alarm"
NOTICE_VERSION = 1


@dataclass(frozen=True, slots=True)
class Notice:
    alarm: StoredAlarm
    #: 1 for the alarm's first notice, 2, 3, ... for each re-notification or escalation.
    notice: int
    #: The outbox row: the same on every retry of this notice to this sink, so a receiver can
    #: drop duplicates.
    delivery_id: int
    instance_id: str
    #: When this attempt is made (the webhook signs it; receivers refuse stale ones).
    sent: datetime

    @property
    def delivery_ref(self) -> str:
        return f"{self.instance_id}-{self.delivery_id}"


class Sink(Protocol):
    """One configured destination for alarm notices."""

    name: str
    min_severity: Severity

    def send(self, notice: Notice) -> None:
        """Deliver ``notice`` or raise ``HearthError(ALARM_DELIVERY_FAILED, reason)``."""
        ...


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def notice_document(notice: Notice) -> dict[str, Any]:
    alarm = notice.alarm
    return {
        "format": NOTICE_FORMAT,
        "version": NOTICE_VERSION,
        "instance": notice.instance_id,
        "delivery": notice.delivery_ref,
        "notice": notice.notice,
        "sent": _ts(notice.sent),
        "alarm": {
            "id": alarm.alarm_id,
            "kind": str(alarm.kind),
            "severity": alarm.severity.value,
            "subject": alarm.subject,
            "summary": alarm.summary,
            "details": dict(alarm.details),
            "state": alarm.state.value,
            "count": alarm.count,
            "first_seen": _ts(alarm.first_seen),
            "last_seen": _ts(alarm.last_seen),
        },
    }


def notice_json(notice: Notice) -> bytes:
    """Canonical JSON (sorted keys, no whitespace): what the webhook signs and sends."""
    return orjson.dumps(notice_document(notice), option=orjson.OPT_SORT_KEYS)


def notice_subject(notice: Notice) -> str:
    alarm = notice.alarm
    repeat = f" (x{alarm.count})" if alarm.count > 1 else ""
    return f"[Hearth {alarm.severity.value.upper()}] {alarm.kind} {alarm.subject}{repeat}"


def notice_text(notice: Notice) -> str:
    """A plain-text rendering for people (the e-mail body)."""
    alarm = notice.alarm
    lines = [
        alarm.summary,
        "",
        f"Alarm:      {alarm.alarm_id}",
        f"Kind:       {alarm.kind}",
        f"Severity:   {alarm.severity.value}",
        f"Subject:    {alarm.subject}",
        f"State:      {alarm.state.value}",
        f"Seen:       {alarm.count} time(s), first {_ts(alarm.first_seen)}, "
        f"last {_ts(alarm.last_seen)}",
        f"Instance:   {notice.instance_id}",
        f"Notice:     {notice.notice} (delivery {notice.delivery_ref})",
    ]
    if alarm.details:
        lines += ["", "Details:"]
        lines += [f"  {key}: {value}" for key, value in sorted(alarm.details.items())]
    lines += [
        "",
        "Acknowledge or resolve it with:",
        f"  hearth alarm ack {alarm.alarm_id} --note '...'",
        f"  hearth alarm resolve {alarm.alarm_id} --note '...'",
    ]
    return "\n".join(lines) + "\n"
