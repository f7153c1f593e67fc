"""``hearth integrity repair --from-backup ID``: restore exactly the damaged records from a
verified backup (HIPAA 164.312(c)(1), 164.308(a)(7)(ii)(B)); docs/design.md, "Repair from a
backup".

1. The damaged rows are the scanner's open findings, each checked again now: a finding whose
   row has become intact is closed, never "repaired".
2. The backup must verify (signature, chain, every segment's hash and AEAD tag) before anything
   is read from it; then its copies of exactly those rows are read, and the chain's Merkle root
   over every version's ``(seq, MAC)`` must match the signed manifest before any is used.
3. A row written after the backup's last ``seq`` cannot be in it: reported, not repaired.
4. Each copy must pass its seal and MAC check under this instance's keys; the storage layer
   rewrites only rows that are still damaged (``hearth.storage.repair``), in one transaction,
   audited, and recomputes pointers and index rows of the resources touched.
5. The repaired rows are scanned again, and findings close as ``repaired`` only if they pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Protocol

from hearth.backupfmt import SegmentDecryptor
from hearth.domain import Clock, HearthError, Outcome, errors
from hearth.services.backup import VERSIONS, BackupService
from hearth.storage import SystemRepository, to_us
from hearth.storage.repair import VERSION_COLUMNS
from hearth.storage.scan import FindingState, ScanFinding, ScanKind

__all__ = [
    "BackupVersions",
    "RepairItem",
    "RepairReport",
    "ServiceBackup",
    "repair_from_backup",
]


class BackupVersions(Protocol):
    """What repair needs from one backup (``hearth.wiring`` adapts the backup service)."""

    backup_id: str

    def verify(self) -> int:
        """Verify the backup and the chain it needs; return the last version ``seq`` it
        holds. Raise ``HearthError`` if anything fails to verify."""
        ...

    def versions(self, seqs: AbstractSet[int]) -> dict[int, tuple[Any, ...]]:
        """The backup's rows of these versions, as ``(seq, res_type, res_id, version, ts_us,
        deleted, key_id, body, mac_key_id, mac)``, returned only after every segment read and
        the chain's Merkle root verified. Raise ``HearthError`` otherwise."""
        ...


class ServiceBackup:
    """One backup, read through the backup service (``hearth.services.backup``) with the
    operator's identity."""

    def __init__(self, service: BackupService, backup_id: str, decryptor: SegmentDecryptor) -> None:
        self.backup_id = backup_id
        self._service = service
        self._decryptor = decryptor

    def verify(self) -> int:
        result = self._service.verify(self.backup_id, decryptor=self._decryptor)
        if not result.ok:
            raise HearthError(
                errors.REPAIR_REFUSED,
                f"`hearth backup verify {self.backup_id}` fails on "
                + ", ".join(sorted(t for t, r in result.targets.items() if not r.get("ok"))),
            )
        for info in self._service.list_backups():
            if info.backup_id == self.backup_id:
                return info.sequence_to
        raise HearthError(errors.REPAIR_REFUSED, f"There is no backup {self.backup_id}.")

    def versions(self, seqs: AbstractSet[int]) -> dict[int, tuple[Any, ...]]:
        out: dict[int, tuple[Any, ...]] = {}
        rows = self._service.iter_backup_rows(
            self.backup_id, decryptor=self._decryptor, tables=[VERSIONS]
        )
        # Every row is read, so that the chain's Merkle root is checked (at the end) before
        # any copy is used; only the wanted ones are kept.
        for table, values in rows:
            seq = int(values["seq"])
            if table == VERSIONS and seq in seqs:
                out[seq] = tuple(values[c] for c in VERSION_COLUMNS)
        return out


@dataclass(frozen=True, slots=True)
class RepairItem:
    """One damaged row and what repair did (or, in a dry run, would do) about it."""

    seq: int
    res_type: str | None
    res_id: str | None
    version: int | None
    outcome: str  # restored | would-restore | after-backup | not-in-backup | refused | intact
    reason: str = ""

    def __str__(self) -> str:
        where = (
            f"{self.res_type}/{self.res_id}/_history/{self.version}"
            if self.res_type
            else "(unknown resource)"
        )
        text = f"seq {self.seq} {where}: {self.outcome}"
        return f"{text} ({self.reason})" if self.reason else text


@dataclass(slots=True)
class RepairReport:
    backup_id: str
    dry_run: bool
    backup_last_seq: int = 0
    items: list[RepairItem] = field(default_factory=list)
    pointers: list[str] = field(default_factory=list)
    reindexed: list[str] = field(default_factory=list)
    #: Findings that a scan of the repaired rows still reports (empty on success).
    remaining: list[ScanFinding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        wanted = "would-restore" if self.dry_run else "restored"
        return not self.remaining and all(i.outcome in (wanted, "intact") for i in self.items)


log = logging.getLogger("hearth.integrity")

_ROW_KINDS = (ScanKind.VERSION, ScanKind.MISSING)


def repair_from_backup(
    system: Callable[[], SystemRepository],
    backup: BackupVersions,
    *,
    clock: Clock,
    dry_run: bool = False,
) -> RepairReport:
    """Repair what the scanner found damaged from ``backup`` (see the module docstring)."""
    repo = system()
    scan = repo.scanning()
    report = RepairReport(backup.backup_id, dry_run)
    open_findings = [s.finding for s in scan.findings()]
    row_seqs = sorted({f.seq for f in open_findings if f.kind in _ROW_KINDS})
    resources = {
        (f.res_type, f.res_id)
        for f in open_findings
        if f.kind in (ScanKind.POINTER, ScanKind.INDEX) and f.res_type and f.res_id
    }
    stray = {f.seq for f in open_findings if f.kind is ScanKind.INDEX and not f.res_type}
    # 1. Which rows are still damaged now.
    now_damaged = {f.seq: f for f in scan.check_seqs(row_seqs) if f.kind in _ROW_KINDS}
    healed = [f"{k.value}|{s}" for s in row_seqs if s not in now_damaged for k in _ROW_KINDS]
    if healed and not dry_run:
        scan.close(healed, state=FindingState.CLEARED, now_us=to_us(clock.now()), by=repo.actor)
    # 2. The backup must verify before anything is read from it.
    try:
        last = backup.verify()
    except HearthError as exc:
        _audit(repo, dry_run, Outcome.ERROR, errors.REPAIR_REFUSED.code)
        raise HearthError(
            errors.REPAIR_REFUSED,
            f"Backup {backup.backup_id} does not verify, so nothing was repaired: {exc.detail}",
        ) from None
    report.backup_last_seq = last
    # 3. Rows written after the backup cannot be in it.
    for seq, finding in sorted(now_damaged.items()):
        if seq > last:
            report.items.append(
                _item(
                    finding,
                    "after-backup",
                    f"written after backup {backup.backup_id} (its last version is {last}); "
                    "repair from a newer backup",
                )
            )
    wanted = {s for s in now_damaged if s <= last}
    try:
        copies = backup.versions(wanted) if wanted else {}
    except HearthError as exc:
        _audit(repo, dry_run, Outcome.ERROR, errors.REPAIR_REFUSED.code)
        raise HearthError(
            errors.REPAIR_REFUSED,
            f"Backup {backup.backup_id} could not be read in full, so nothing was repaired: "
            f"{exc.detail}",
        ) from None
    for seq in sorted(wanted - set(copies)):
        report.items.append(_item(now_damaged[seq], "not-in-backup", "the backup has no such row"))
    # 4. Rewrite, in one audited transaction.
    result = repo.restore_versions(copies, resources=resources, stray_index=stray, dry_run=dry_run)
    for item in result.items:
        outcome = item.outcome
        if outcome == "restored" and dry_run:
            outcome = "would-restore"
        report.items.append(
            RepairItem(item.seq, item.res_type, item.res_id, item.version, outcome, item.reason)
        )
    report.items.sort(key=lambda i: i.seq)
    report.pointers = [f"{t}/{i}" for t, i in result.pointers]
    report.reindexed = [f"{t}/{i}" for t, i in result.reindexed]
    if dry_run:
        _audit(repo, dry_run, Outcome.SUCCESS, None)
        return report
    # 5. Scan what was repaired again; close what now passes.
    restored = [i.seq for i in result.items if i.outcome == "restored"]
    touched = set(result.reindexed) | set(result.pointers) | resources
    report.remaining = scan.check_seqs(set(restored) | _newest_seqs(repo, touched) | stray)
    still = {f.key for f in report.remaining}
    fixed = [f"{k.value}|{s}" for s in restored for k in _ROW_KINDS]
    fixed += [f"{k}|{t}/{i}" for t, i in touched for k in ("pointer", "index")]
    fixed += [f"index|{s}" for s in result.stray_index]
    scan.close(
        [k for k in fixed if k not in still],
        state=FindingState.REPAIRED,
        now_us=to_us(clock.now()),
        by=repo.actor,
    )
    return report


def _newest_seqs(repo: SystemRepository, resources: Iterable[tuple[str, str]]) -> set[int]:
    return repo.scanning().newest_seqs(resources)


def _item(finding: ScanFinding, outcome: str, reason: str) -> RepairItem:
    return RepairItem(
        finding.seq, finding.res_type, finding.res_id, finding.version, outcome, reason
    )


def _audit(repo: SystemRepository, dry_run: bool, outcome: Outcome, code: str | None) -> None:
    """A refused repair and a dry run are audited here; a repair's rewrites are audited in
    their own transaction (``hearth.storage.repair``)."""
    action = "integrity.repair-plan" if dry_run else "integrity.repair"
    try:
        repo.record(action, outcome, code=code)
    except HearthError:
        log.error("could not audit %s: the audit chain refused the entry", action)
