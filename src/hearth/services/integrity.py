"""Integrity verification (HIPAA 164.312(c)(2)): every version, every pointer, the audit chain.

``verify_integrity`` opens every stored version, checks its MAC and its place in the gap-free
sequence, checks that each resource's current pointer names its newest version, and verifies
the audit chain. Each problem is reported with the row it concerns. The run is audited.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from hearth.audit import ChainFinding
from hearth.domain import Alarm, AlarmKind, AlarmRaiser, HearthError, Outcome, Severity
from hearth.services.progress import NullProgress, Progress
from hearth.storage import SystemRepository, VersionFinding

__all__ = ["AuditReport", "IntegrityReport", "verify_audit", "verify_integrity"]

log = logging.getLogger("hearth.integrity")


@dataclass(frozen=True, slots=True)
class AuditReport:
    entries: int
    findings: list[ChainFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


@dataclass(frozen=True, slots=True)
class IntegrityReport:
    versions: int
    version_findings: list[VersionFinding]
    audit: AuditReport

    @property
    def ok(self) -> bool:
        return not self.version_findings and self.audit.ok


def _record_outcome(system: SystemRepository, action: str, ok: bool) -> None:
    """Audit the run; a chain damaged badly enough to refuse the entry must not hide the report."""
    try:
        system.record(action, Outcome.SUCCESS if ok else Outcome.ERROR)
    except HearthError:
        log.error("could not audit %s: the audit chain refused the entry", action)


def verify_audit(
    system: SystemRepository,
    progress: Progress | None = None,
    *,
    alarms: AlarmRaiser | None = None,
) -> AuditReport:
    progress = progress or NullProgress()
    progress.start("audit chain", system.audit_length())
    findings = list(system.verify_audit_chain(on_entry=lambda _seq: progress.advance()))
    progress.finish()
    entries = system.audit_length()
    if findings and alarms is not None:
        first = findings[0]
        alarms.raise_alarm(
            Alarm(
                AlarmKind.AUDIT_CHAIN_BROKEN,
                Severity.CRITICAL,
                "audit-chain",
                f"The audit chain failed verification ({len(findings)} findings).",
                {"first_seq": str(first.seq), "first_kind": first.kind.value},
            )
        )
    _record_outcome(system, "audit.verify", not findings)
    return AuditReport(entries, findings)


def verify_integrity(
    system: SystemRepository,
    progress: Progress | None = None,
    *,
    alarms: AlarmRaiser | None = None,
) -> IntegrityReport:
    progress = progress or NullProgress()
    progress.start("resource versions", system.version_count())
    findings = list(system.scan_versions(on_row=lambda _seq: progress.advance()))
    findings += list(system.check_current_pointers())
    progress.finish()
    if alarms is not None:
        for finding in findings:
            subject = (
                f"{finding.res_type}/{finding.res_id}" if finding.res_type else f"seq:{finding.seq}"
            )
            alarms.raise_alarm(
                Alarm(
                    AlarmKind.INTEGRITY_MISMATCH,
                    Severity.CRITICAL,
                    subject,
                    finding.problem,
                    {"seq": str(finding.seq), "version": str(finding.version)},
                )
            )
    audit = verify_audit(system, progress, alarms=alarms)
    _record_outcome(system, "integrity.verify", not findings and audit.ok)
    return IntegrityReport(system.version_count(), findings, audit)
