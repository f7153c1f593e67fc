"""Alarms: typed security and reliability events that a support team must see and act on.

This module holds only the vocabulary. Raising goes through an ``AlarmRaiser`` that the
composition root provides; the durable store, de-duplication, the open -> acknowledged ->
resolved workflow and the sinks (log, webhook, e-mail, syslog) live behind it.
An alarm's fields never carry PHI: they name records by type and id, users by their id.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Alarm", "AlarmKind", "AlarmRaiser", "Severity"]


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


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
