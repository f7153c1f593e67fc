"""Integrity verification (HIPAA 164.312(c)(2)): every version, every pointer, the audit chain.

``verify_integrity`` opens every stored version, checks its MAC and its place in the gap-free
sequence, checks that each resource's current pointer names its newest version, and verifies
the audit chain. Each problem is reported with the row it concerns. The run is audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hearth.audit import ChainFinding
from hearth.domain import Outcome
from hearth.services.progress import NullProgress, Progress
from hearth.storage import SystemRepository, VersionFinding

__all__ = ["AuditReport", "IntegrityReport", "verify_audit", "verify_integrity"]


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


def verify_audit(system: SystemRepository, progress: Progress | None = None) -> AuditReport:
    progress = progress or NullProgress()
    progress.start("audit chain", system.audit_length())
    findings = list(system.verify_audit_chain(on_entry=lambda _seq: progress.advance()))
    progress.finish()
    entries = system.audit_length()
    system.record("audit.verify", Outcome.SUCCESS if not findings else Outcome.ERROR)
    return AuditReport(entries, findings)


def verify_integrity(system: SystemRepository, progress: Progress | None = None) -> IntegrityReport:
    progress = progress or NullProgress()
    progress.start("resource versions", system.version_count())
    findings = list(system.scan_versions(on_row=lambda _seq: progress.advance()))
    findings += list(system.check_current_pointers())
    progress.finish()
    audit = verify_audit(system, progress)
    outcome = Outcome.SUCCESS if not findings and audit.ok else Outcome.ERROR
    system.record("integrity.verify", outcome)
    return IntegrityReport(system.version_count(), findings, audit)
