"""Alarms: typed security and reliability events that a support team must see and act on.

This module holds only the vocabulary. Raising goes through an ``AlarmRaiser`` that the
composition root provides (``hearth.services.alarms.AlarmService``): the durable store,
de-duplication, the open -> acknowledged -> resolved workflow and the sinks (log, webhook,
e-mail, syslog) live behind it (docs/design.md, "Alarms").
An alarm's fields never carry PHI: they name records by type and id, users by their id.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

__all__ = [
    "Alarm",
    "AlarmKind",
    "AlarmRaiser",
    "AlarmState",
    "Delivery",
    "DeliveryState",
    "Severity",
    "StoredAlarm",
    "can_transition",
]


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Order for comparisons: a sink's ``min_severity``, escalation of a repeat."""
        return _RANK[self]


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlarmKind(enum.StrEnum):
    INTEGRITY_MISMATCH = "integrity.mismatch"
    AUDIT_CHAIN_BROKEN = "audit.chain_broken"
    BACKUP_FAILED = "backup.failed"
    BACKUP_STALE = "backup.stale"
    BACKUP_VERIFY_FAILED = "backup.verify_failed"
    POLICY_OFFSITE_MISSING = "policy.offsite_missing"
    AUTH_BRUTE_FORCE = "auth.brute_force"
    AUTH_CREDENTIAL_STUFFING = "auth.credential_stuffing"
    AUTH_LOCKOUT = "auth.lockout"
    AUTH_TOKEN_REUSE = "auth.token_reuse"  # noqa: S105 - reuse of a refresh token or code
    ACCESS_BREAK_GLASS = "access.break_glass"
    ACCESS_SNOOPING = "access.snooping"
    EXPORT_VOLUME = "export.volume"
    KEY_RELOAD_FAILED = "keys.reload_failed"
    KEY_NONCE_BUDGET = "keys.nonce_budget"


@dataclass(frozen=True, slots=True)
class Alarm:
    kind: AlarmKind
    severity: Severity
    #: What the alarm is about, stable across repeats so that repeats de-duplicate:
    #: ``Patient/123``, ``user:alice``, ``target:offsite-s3``.
    subject: str
    summary: str
    details: dict[str, str] = field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        return f"{self.kind.value}|{self.subject}"


class AlarmRaiser(Protocol):
    def raise_alarm(self, alarm: Alarm) -> None:
        """Record and dispatch ``alarm``; must not raise (an alarm failure is logged)."""
        ...


class AlarmState(enum.StrEnum):
    """Where an alarm is in its workflow: open -> acknowledged -> resolved, or open -> resolved.

    Open and acknowledged alarms are *active*: a repeat of the same ``dedup_key`` counts against
    the active alarm instead of opening another. Resolved is final; a later repeat opens a new
    alarm.
    """

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


_ALLOWED = {
    (AlarmState.OPEN, AlarmState.ACKNOWLEDGED),
    (AlarmState.OPEN, AlarmState.RESOLVED),
    (AlarmState.ACKNOWLEDGED, AlarmState.RESOLVED),
}


def can_transition(current: AlarmState, target: AlarmState) -> bool:
    return (current, target) in _ALLOWED


class DeliveryState(enum.StrEnum):
    PENDING = "pending"  # waiting for its first attempt or a retry
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after the configured number of attempts


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notice of one alarm to one sink, and what became of it."""

    delivery_id: int
    sink: str
    notice: int  # 1 for the first notice of the alarm, 2, 3, ... for re-notifications
    state: DeliveryState
    attempts: int
    created: datetime
    last_attempt: datetime | None
    delivered: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class StoredAlarm:
    """An alarm as the store holds it: the event, its repeats and its workflow."""

    alarm_id: str
    #: An ``AlarmKind``, or the stored text of a kind this version does not know.
    kind: str
    severity: Severity
    subject: str
    summary: str
    details: dict[str, str]
    state: AlarmState
    count: int
    first_seen: datetime
    last_seen: datetime
    notices: int
    last_notified: datetime | None
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    acknowledge_note: str | None = None
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    resolve_note: str | None = None
    deliveries: tuple[Delivery, ...] = ()

    @property
    def dedup_key(self) -> str:
        return f"{self.kind}|{self.subject}"
