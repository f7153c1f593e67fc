"""Backups (HIPAA 164.308(a)(7)(ii)(A)(B)(D)): create, list, verify, restore, drill.

- ``create``: one consistent snapshot of the database (see ``hearth.storage.backup``), streamed
  table by table through ``hearth.backupfmt.BackupWriter`` into every selected target; full, or
  incremental after the chain's head (versions and audit rows after its high-water marks, the
  small mutable tables whole). The manifest is stored last, then the instance records the new
  head, apart from the targets, so a rolled-back target is noticed.
- ``verify``: signatures, the chain, every segment's hash (and with the operator's identity every
  AEAD tag and the Merkle roots); ``deep`` also restores into a scratch SQLite database.
- ``restore``: into an empty database of any engine, to any sequence number or time the chain
  covers; the load is one transaction that commits only after every version's seal and MAC
  and the Merkle root have been recomputed from the restored rows.
- ``drill``: restore the newest backup into a scratch database and record RTO and RPO.
- ``iter_backup_rows``: the verified rows of a backup, for ``hearth integrity repair``.

Failures raise ``backup.failed`` / ``backup.verify_failed`` alarms; every action is audited.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hearth.audit import AuditRecord
from hearth.backupfmt import (
    BackupKind,
    BackupReport,
    BackupWriter,
    ChainReport,
    Check,
    Manifest,
    ManifestSigner,
    ManifestVerifier,
    MerkleBuilder,
    Row,
    SegmentDecryptor,
    SegmentEncryptor,
    SegmentError,
    SequenceRange,
    Status,
    inspect_backup,
    inspect_chain,
    manifest_object_name,
    new_backup_id,
    open_manifest,
    read_segment,
)
from hearth.backupfmt.manifest import format_time
from hearth.backupfmt.naming import (
    BACKUP_ID_PATTERN,
    MANIFEST_PREFIX,
    backup_id_from_manifest_name,
)
from hearth.domain import (
    Alarm,
    AlarmKind,
    AlarmRaiser,
    Clock,
    HearthError,
    IntegrityError,
    Outcome,
    Random,
    Severity,
)
from hearth.domain.errors import (
    BACKUP_ARGUMENT,
    BACKUP_INVALID,
    TARGET_OBJECT_NOT_FOUND,
)
from hearth.services.progress import NullProgress, Progress
from hearth.storage.backup import (
    APPEND_TABLES,
    BackupState,
    Loader,
    RestoreDatabase,
    SnapshotReader,
    TablePlan,
    backup_plan,
)
from hearth.storage.index_workers import IndexWorkers
from hearth.storage.repository import from_us, to_us

if TYPE_CHECKING:
    # Only for annotations: importing hearth.targets loads boto3 and paramiko.
    from hearth.targets import BackupTarget

__all__ = [
    "BackupInfo",
    "BackupService",
    "CreateResult",
    "DrillResult",
    "RestoreResult",
    "VerifyResult",
]

log = logging.getLogger("hearth.backup")

#: Segments close at this much plaintext: a failed upload is retried in small pieces, and a
#: reader that must hold one segment's rows (``iter_backup_rows``) holds at most this much.
SEGMENT_PLAINTEXT = 16 * 1024 * 1024
VERSIONS = "resource_version"


@dataclass(frozen=True, slots=True)
class CreateResult:
    backup_id: str
    kind: str
    sequence_from: int
    sequence_to: int
    rows: dict[str, int]
    stored_bytes: int
    targets: list[str]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "kind": self.kind,
            "sequence": {"from": self.sequence_from, "to": self.sequence_to},
            "rows": self.rows,
            "stored_bytes": self.stored_bytes,
            "targets": self.targets,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class BackupInfo:
    backup_id: str
    kind: str
    created: datetime
    sequence_from: int
    sequence_to: int
    previous: str | None
    stored_bytes: int
    targets: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "kind": self.kind,
            "created": format_time(self.created),
            "sequence": {"from": self.sequence_from, "to": self.sequence_to},
            "previous": self.previous,
            "stored_bytes": self.stored_bytes,
            "targets": self.targets,
        }


@dataclass(frozen=True)
class VerifyResult:
    """One report per target; ``deep`` holds the scratch restore's result when asked for."""

    ok: bool
    targets: dict[str, dict[str, Any]]
    deep: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "targets": self.targets, "deep": self.deep}


@dataclass(frozen=True, slots=True)
class RestoreResult:
    backup_id: str
    target: str
    engine: str
    sequence: int
    versions: int
    merkle_root: str
    rows: dict[str, int]
    indexed: int
    newest_change: datetime | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "target": self.target,
            "engine": self.engine,
            "sequence": self.sequence,
            "versions": self.versions,
            "merkle_root": self.merkle_root,
            "rows": self.rows,
            "indexed": self.indexed,
            "newest_change": format_time(self.newest_change) if self.newest_change else None,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class DrillResult:
    backup_id: str
    rto_seconds: float
    rpo_seconds: float | None
    restore: RestoreResult
    at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "backup_id": self.backup_id,
            "at": format_time(self.at),
            "rto_seconds": round(self.rto_seconds, 3),
            "rpo_seconds": None if self.rpo_seconds is None else round(self.rpo_seconds, 3),
            "restore": self.restore.to_json(),
        }


@dataclass
class _Chain:
    """A verified run of manifests from a full backup to the one asked for, oldest first."""

    target: BackupTarget
    manifests: list[Manifest] = field(default_factory=list)

    @property
    def last(self) -> Manifest:
        return self.manifests[-1]


def _counted(pages: Iterable[list[Row]], progress: Progress) -> Iterator[Row]:
    """Passes rows through a page at a time, advancing a progress bar per page."""
    for page in pages:
        yield from page
        progress.advance(len(page))


class BackupService:
    """Backups of one instance. ``snapshot`` opens the source database's consistent view
    (None when the instance's database is not reachable: restore still works); ``record``
    audits an action on the instance's own trail."""

    def __init__(
        self,
        *,
        targets: Sequence[BackupTarget],
        verifier: ManifestVerifier,
        encryptor: SegmentEncryptor | None,
        signer: ManifestSigner | None,
        snapshot: Callable[[], AbstractContextManager[SnapshotReader]] | None,
        state: BackupState | None,
        record: Callable[[str, Outcome, str | None], None],
        restore_database: Callable[[str], RestoreDatabase],
        kek: Any,
        alarms: AlarmRaiser,
        clock: Clock,
        random: Random,
        instance_id: str,
        work_dir: Path,
        operator: str | None = None,
        segment_plaintext: int = SEGMENT_PLAINTEXT,
        lock_days: Mapping[str, int] | None = None,
        index_workers: IndexWorkers | None = None,
    ) -> None:
        """``lock_days``: per target label, how long new objects stay immutable where the
        target supports it (S3 Object Lock); the spool gives segments the longest of them.
        ``index_workers`` find index entries while a restore rebuilds the index."""
        if not targets:
            raise HearthError(BACKUP_ARGUMENT, "No backup target is configured.")
        self.targets = list(targets)
        self._verifier = verifier
        self._encryptor = encryptor
        self._signer = signer
        self._snapshot = snapshot
        self._state = state
        self._record = record
        self._restore_database = restore_database
        self._kek = kek
        self._alarms = alarms
        self._clock = clock
        self._random = random
        self._instance_id = instance_id
        self._work = work_dir
        self._operator = operator
        self._segment_plaintext = segment_plaintext
        self._lock_days = dict(lock_days or {})
        self._index_workers = index_workers

    # ------------------------------------------------------------------------------- helpers
    def _alarm(self, kind: AlarmKind, subject: str, summary: str, details: dict[str, str]) -> None:
        self._alarms.raise_alarm(Alarm(kind, Severity.CRITICAL, subject, summary, details))

    def _audit(self, action: str, outcome: Outcome, code: str | None = None) -> None:
        try:
            self._record(action, outcome, code)
        except HearthError:
            log.error("could not audit %s", action)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One backup at a time per instance (a second ``create`` fails fast)."""
        self._work.mkdir(parents=True, exist_ok=True)
        path = self._work / "backup.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise HearthError(
                    BACKUP_ARGUMENT, "Another backup of this instance is running."
                ) from None
            yield
        finally:
            os.close(fd)

    def _manifest(self, target: BackupTarget, backup_id: str) -> Manifest:
        """A manifest read from ``target``, its signature verified and its name checked."""
        return self._manifest_sized(target, backup_id)[0]

    def _manifest_sized(self, target: BackupTarget, backup_id: str) -> tuple[Manifest, int]:
        """``_manifest`` and the length of the stored manifest object."""
        data = target.get_bytes(manifest_object_name(backup_id))
        manifest = open_manifest(data, self._verifier).manifest
        if manifest.backup_id != backup_id:
            raise HearthError(BACKUP_INVALID, f"Manifest {backup_id} belongs to another name.")
        return manifest, len(data)

    def _chain(self, target: BackupTarget, backup_id: str) -> _Chain:
        """The backups a restore of ``backup_id`` reads: back along ``previous`` links to the
        nearest full backup, each link checked against the predecessor's manifest id."""
        manifests = [self._manifest(target, backup_id)]
        while manifests[-1].kind is BackupKind.INCREMENTAL:
            link = manifests[-1].previous
            if link is None:
                raise HearthError(BACKUP_INVALID, "An incremental backup names no predecessor.")
            try:
                before = self._manifest(target, link.backup_id)
            except HearthError as exc:
                if exc.code is TARGET_OBJECT_NOT_FOUND:
                    raise HearthError(
                        BACKUP_INVALID,
                        f"Backup {link.backup_id}, which {manifests[-1].backup_id} builds on, is "
                        f"missing from target {target.label}.",
                    ) from None
                raise
            after = manifests[-1]
            if (
                before.manifest_id != link.manifest_id
                or before.sequence.last + 1 != after.sequence.first
                or before.created >= after.created
                or before.instance_id != after.instance_id
            ):
                raise HearthError(
                    BACKUP_INVALID,
                    f"Backup {after.backup_id} does not follow {before.backup_id} (chain broken).",
                )
            manifests.append(before)
        manifests.reverse()
        return _Chain(target, manifests)

    def _head(self, target: BackupTarget) -> str | None:
        """The newest backup on ``target``: among manifests that verify, the one no other names
        as its predecessor (the newest such by time, should a fork exist)."""
        manifests: dict[str, Manifest] = {}
        for name in target.list_names(MANIFEST_PREFIX):
            backup_id = backup_id_from_manifest_name(name)
            if backup_id is None:
                continue
            try:
                manifests[backup_id] = self._manifest(target, backup_id)
            except HearthError:
                continue
        named = {m.previous.backup_id for m in manifests.values() if m.previous is not None}
        heads = [m for b, m in manifests.items() if b not in named]
        if not heads:
            return None
        return max(heads, key=lambda m: (m.created, m.backup_id)).backup_id

    def _is_ancestor(self, target: BackupTarget, ancestor: str, of: str) -> bool:
        current: str | None = of
        while current is not None:
            if current == ancestor:
                return True
            try:
                manifest = self._manifest(target, current)
            except HearthError:
                return False
            current = manifest.previous.backup_id if manifest.previous else None
        return False

    def _previous(self, full: bool) -> tuple[Manifest | None, bool, str]:
        """The backup to link to and whether the new one can be incremental, with a reason.

        The chain head on the first target must be the one this instance recorded, or a
        descendant of it (a backup whose manifest was stored but whose state write was lost);
        anything else is a rollback or a foreign manifest, refused and alarmed."""
        primary = self.targets[0]
        expected = self._expected_head(primary)
        head = self._head(primary)
        if head is None:
            if expected is not None:
                self._alarm(
                    AlarmKind.BACKUP_VERIFY_FAILED,
                    f"target:{primary.label}",
                    "The backup target holds no backup although this instance made some.",
                    {"expected_head": expected},
                )
            return None, False, "no earlier backup on the target"
        if expected is not None and not self._is_ancestor(primary, expected, head):
            self._alarm(
                AlarmKind.BACKUP_VERIFY_FAILED,
                f"target:{primary.label}",
                "The newest backup on the target is not the one this instance recorded "
                "(rolled back or replaced).",
                {"expected_head": expected, "found_head": head},
            )
            if not full:
                raise HearthError(
                    BACKUP_INVALID,
                    f"The newest backup on target {primary.label} ({head}) is not the one this "
                    f"instance recorded ({expected}): verify the target; `--full` starts anew.",
                )
            return None, False, "the target's chain is not this instance's"
        try:
            previous = self._manifest(primary, head)
        except HearthError:
            if not full:
                raise
            return None, False, "the newest manifest does not verify"
        if previous.instance_id != self._instance_id:
            return None, False, "the newest backup belongs to another instance"
        for other in self.targets[1:]:
            # Linking to a backup that is not the other target's newest would fork its chain
            # (a run to that target alone went on from it): start a new chain instead.
            if self._head(other) != previous.backup_id:
                return None, False, f"target {other.label}'s newest backup is another one"
        if full:
            return previous, False, "a full backup was asked for"
        return previous, True, "incremental"

    # -------------------------------------------------------------------------------- create
    def create(self, *, full: bool = False, progress: Progress | None = None) -> CreateResult:
        """Take a backup; on failure raise ``backup.failed`` and re-raise."""
        if self._snapshot is None or self._signer is None or self._encryptor is None:
            raise HearthError(
                BACKUP_ARGUMENT,
                "Backups need the recipients and signing key: run `hearth keys backup-recipient`.",
            )
        progress = progress or NullProgress()
        started = time.monotonic()
        try:
            with self._lock():
                result = self._create(full, progress, started)
        except BaseException as exc:
            code = exc.code.code if isinstance(exc, HearthError) else None
            detail = exc.detail if isinstance(exc, HearthError) else type(exc).__name__
            self._alarm(
                AlarmKind.BACKUP_FAILED,
                "backup:create",
                "A backup failed.",
                {"error": detail[:200], "targets": ",".join(t.label for t in self.targets)},
            )
            self._audit("backup.create", Outcome.ERROR, code)
            raise
        self._audit("backup.create", Outcome.SUCCESS)
        return result

    def _create(self, full: bool, progress: Progress, started: float) -> CreateResult:
        if self._snapshot is None or self._signer is None or self._encryptor is None:
            raise HearthError(BACKUP_ARGUMENT, "Backups are not configured.")
        spool_dir = self._work / "spool"
        # Segments a killed run left half-spooled are never named by a manifest.
        if spool_dir.is_dir():
            for leftover in spool_dir.glob("segment-*"):
                leftover.unlink(missing_ok=True)
        previous, incremental, reason = self._previous(full)
        chain_audit = 0
        if incremental and previous is not None:
            chain = self._chain(self.targets[0], previous.backup_id)
            chain_audit = sum(m.row_counts.get("audit_entry", 0) for m in chain.manifests)
        created = self._clock.now()
        if previous is not None and previous.created >= created:
            raise HearthError(BACKUP_ARGUMENT, "The clock is behind the newest backup's time.")
        newest = [b for b in (self._newest_name(t) for t in self.targets) if b is not None]
        backup_id = self._next_id(created, max(newest) if newest else None)
        locked = [self._lock_days.get(t.label, 0) for t in self.targets if t.supports_immutability]
        days = max(locked, default=0)
        from hearth.targets.spool import TargetSpool

        spool = TargetSpool(
            self.targets,
            spool_dir,
            retain_until=created + timedelta(days=days) if days > 0 else None,
        )
        with self._snapshot() as snap:
            marks = snap.marks()
            schema = snap.schema_version()
            if (
                previous is not None
                and incremental
                and (
                    previous.schema_version != schema
                    or previous.engine != snap.engine
                    or marks.version < previous.sequence.last
                    or marks.audit < chain_audit
                )
            ):
                incremental = False
                reason = "the database changed under the chain (schema, engine or restore)"
            if previous is not None and marks.version < previous.sequence.last:
                # The database is behind the chain (restored to an earlier point): a new
                # chain starts, unlinked, since versions numbered again must not look like
                # a continuation.
                previous = None
            kind = BackupKind.INCREMENTAL if incremental else BackupKind.FULL
            version_after = previous.sequence.last if incremental and previous else 0
            audit_after = chain_audit if incremental else 0
            writer = BackupWriter(
                backup_id=backup_id,
                instance_id=self._instance_id,
                created=created,
                kind=kind,
                engine=snap.engine,
                schema_version=schema,
                sequence=SequenceRange(version_after + 1, marks.version),
                previous=previous,
                encryptor=self._encryptor,
                spool=spool,
                merkle_table=VERSIONS,
                max_segment_plaintext=self._segment_plaintext,
            )
            plans = backup_plan()
            bounds = {
                plan.name: self._bounds(
                    plan, version_after, audit_after, marks.version, marks.audit
                )
                for plan in plans
            }
            total = sum(
                snap.count(p, after=bounds[p.name][0], upto=bounds[p.name][1]) for p in plans
            )
            progress.start(f"backup {kind.value}", total)
            for plan in plans:
                after, upto = bounds[plan.name]
                rows = _counted(snap.pages(plan, after=after, upto=upto), progress)
                writer.add_table(plan.name, plan.columns, rows)
            progress.finish()
        manifest = writer.manifest()
        audit_rows = manifest.row_counts.get("audit_entry", 0)
        if audit_rows != marks.audit - audit_after:
            raise HearthError(
                BACKUP_INVALID,
                "The audit chain's sequence has a gap; take a full backup after `hearth audit "
                "verify`.",
            )
        signed = writer.finish(self._signer)
        data = signed.to_bytes()
        # The manifest is stored last, on every target; then the instance records the head.
        for target in self.targets:
            days = self._lock_days.get(target.label, 0) if target.supports_immutability else 0
            retain = created + timedelta(days=days) if days > 0 else None
            target.put_bytes(manifest_object_name(backup_id), data, retain_until=retain)
        if self._state is not None:
            for target in self.targets:
                self._state.set(BackupState.head_key(target.label), backup_id)
        log.info("backup %s (%s: %s) stored", backup_id, kind.value, reason)
        return CreateResult(
            backup_id=backup_id,
            kind=kind.value,
            sequence_from=manifest.sequence.first,
            sequence_to=manifest.sequence.last,
            rows=dict(manifest.row_counts),
            stored_bytes=_stored_bytes(manifest, len(data)),
            targets=[t.label for t in self.targets],
            seconds=time.monotonic() - started,
        )

    @staticmethod
    def _newest_name(target: BackupTarget) -> str | None:
        ids = [
            b
            for b in (backup_id_from_manifest_name(n) for n in target.list_names(MANIFEST_PREFIX))
            if b is not None
        ]
        return max(ids) if ids else None

    def _next_id(self, created: datetime, newest: str | None) -> str:
        """A fresh id that sorts after every backup id on the targets (``newest``): verifiers
        order a chain and pick the newest of several chains by id. Ids sort by time to the
        second, then by their random part: within that second the random part is drawn above
        the newest one's."""
        backup_id = new_backup_id(created, self._random)
        if newest is None or backup_id > newest:
            return backup_id
        stamp, _, theirs = newest.partition("-")
        if backup_id.partition("-")[0] != stamp:
            raise HearthError(
                BACKUP_ARGUMENT,
                f"The clock is behind the newest backup ({newest}); check it.",
            )
        low = int(theirs, 16) + 1
        span = 2**64 - low
        if span <= 0:
            raise HearthError(BACKUP_ARGUMENT, "Backups this close together: try again.")
        draw = int.from_bytes(self._random.token_bytes(8), "big") % span
        return f"{stamp}-{low + draw:016x}"

    @staticmethod
    def _bounds(
        plan: TablePlan, version_after: int, audit_after: int, version_high: int, audit_high: int
    ) -> tuple[int | None, int | None]:
        kind = APPEND_TABLES.get(plan.name)
        if kind == "version":
            return version_after, version_high
        if kind == "audit":
            return audit_after, audit_high
        return None, None

    # ---------------------------------------------------------------------------------- list
    def list_backups(self) -> list[BackupInfo]:
        """Every backup on the targets whose manifest verifies, oldest first."""
        found = self._list()
        self._audit("backup.list", Outcome.SUCCESS)
        return found

    def _list(self) -> list[BackupInfo]:
        found: dict[str, tuple[Manifest, int, list[str]]] = {}
        for target in self.targets:
            for name in target.list_names(MANIFEST_PREFIX):
                backup_id = backup_id_from_manifest_name(name)
                if backup_id is None:
                    continue
                if backup_id in found:
                    found[backup_id][2].append(target.label)
                    continue
                try:
                    manifest, manifest_bytes = self._manifest_sized(target, backup_id)
                except HearthError:
                    continue
                found[backup_id] = (manifest, manifest_bytes, [target.label])
        out = []
        for backup_id in sorted(found):
            manifest, manifest_bytes, labels = found[backup_id]
            out.append(
                BackupInfo(
                    backup_id=backup_id,
                    kind=manifest.kind.value,
                    created=manifest.created,
                    sequence_from=manifest.sequence.first,
                    sequence_to=manifest.sequence.last,
                    previous=manifest.previous.backup_id if manifest.previous else None,
                    stored_bytes=_stored_bytes(manifest, manifest_bytes),
                    targets=labels,
                )
            )
        return out

    # -------------------------------------------------------------------------------- verify
    def verify(
        self,
        backup_id: str | None = None,
        *,
        decryptor: SegmentDecryptor | None = None,
        deep: bool = False,
        progress: Progress | None = None,
    ) -> VerifyResult:
        """Verify one backup and the chain it needs (``backup_id``) or every backup. With the
        operator's identity (``decryptor``) every AEAD tag and Merkle root is checked too;
        ``deep`` restores into a scratch SQLite database and recomputes every MAC."""
        if deep and decryptor is None:
            raise HearthError(BACKUP_ARGUMENT, "--deep needs the backup identity (--identity).")
        reports: dict[str, dict[str, Any]] = {}
        ok = True
        for target in self.targets:
            expected = self._expected_head(target)
            # A newer backup that descends from the recorded head is a run whose manifest was
            # stored but whose head was not recorded (killed in between): it is expected too.
            head = self._head(target) if expected is not None else None
            if head is not None and expected is not None and head != expected:
                if self._is_ancestor(target, expected, head):
                    expected_here: str | None = head
                else:
                    expected_here = expected
            else:
                expected_here = expected
            try:
                # One backup: manifests and links of all (cheap), segments of its chain only.
                report = inspect_chain(
                    target,
                    self._verifier,
                    decryptor=decryptor,
                    expected_head=expected_here if backup_id is None else None,
                    instance_id=self._instance_id or None,
                    read_segments=backup_id is None,
                )
                if backup_id is not None:
                    report = self._read_chain_segments(target, report, backup_id, decryptor)
            except HearthError as exc:
                reports[target.label] = {"ok": False, "error": exc.detail}
                ok = False
                continue
            body = _chain_json(report, backup_id, target, self)
            if decryptor is None:
                body["note"] = "AEAD tags and Merkle roots need the backup identity (--identity)"
            reports[target.label] = body
            ok = ok and bool(body["ok"])
        deep_result: dict[str, Any] | None = None
        if deep and decryptor is not None:
            wanted = backup_id or self._newest_id()
            if wanted is None:
                raise HearthError(BACKUP_ARGUMENT, "There is no backup to verify.")
            with tempfile.TemporaryDirectory(prefix="hearth-verify-") as scratch:
                try:
                    restored = self.restore(
                        wanted,
                        into=f"sqlite:///{Path(scratch) / 'verify.db'}",
                        decryptor=decryptor,
                        progress=progress,
                        audit_action="backup.verify_deep",
                        index=False,
                    )
                    deep_result = {"ok": True, **restored.to_json()}
                except HearthError as exc:
                    deep_result = {"ok": False, "backup_id": wanted, "error": exc.detail}
                    ok = False
        if not ok:
            failing = [label for label, r in reports.items() if not r.get("ok")]
            self._alarm(
                AlarmKind.BACKUP_VERIFY_FAILED,
                f"backup:{backup_id or 'all'}",
                "A backup failed verification; it must not be restored.",
                {"targets": ",".join(failing) or "deep", "first": _first_failure(reports)},
            )
        self._audit("backup.verify", Outcome.SUCCESS if ok else Outcome.ERROR)
        return VerifyResult(ok, reports, deep_result)

    def _read_chain_segments(
        self,
        target: BackupTarget,
        report: ChainReport,
        backup_id: str,
        decryptor: SegmentDecryptor | None,
    ) -> ChainReport:
        """``report`` (manifests and links only) with the segment checks of ``backup_id`` and
        the backups before it back to the full one added."""
        by_id = {b.manifest.backup_id: b for b in report.backups if b.manifest is not None}
        chain: list[str] = []
        current: str | None = backup_id
        while current is not None and current in by_id:
            chain.append(current)
            manifest = by_id[current].manifest
            if manifest is None or manifest.kind is BackupKind.FULL:
                break
            current = manifest.previous.backup_id if manifest.previous else None
        read: dict[str, BackupReport] = {}
        previous: Manifest | None = None
        for member in reversed(chain):
            entry = by_id[member]
            linked = all(c.status is not Status.FAILED for c in entry.checks)
            segments = inspect_backup(
                target,
                member,
                self._verifier,
                decryptor=decryptor,
                previous=previous if linked else None,
            )
            extra = tuple(c for c in entry.checks if c.check.startswith("chain."))
            read[member] = BackupReport(entry.name, segments.manifest, segments.checks + extra)
            previous = segments.manifest
        backups = tuple(
            read.get(b.manifest.backup_id, b) if b.manifest is not None else b
            for b in report.backups
        )
        return ChainReport(backups, report.checks, report.head)

    def _expected_head(self, target: BackupTarget) -> str | None:
        """The newest backup this instance stored on ``target`` (kept apart from it)."""
        if self._state is None:
            return None
        return self._state.get(BackupState.head_key(target.label))

    def _newest_id(self) -> str | None:
        heads = [h for h in (self._head(t) for t in self.targets) if h is not None]
        return max(heads) if heads else None

    # ------------------------------------------------------------------------------- restore
    def _find_chain(self, backup_id: str) -> _Chain:
        if not BACKUP_ID_PATTERN.fullmatch(backup_id):
            raise HearthError(BACKUP_ARGUMENT, "Not a backup id (`hearth backup list` shows them).")
        errors_seen: list[str] = []
        absent = 0
        for target in self.targets:
            try:
                if not target.exists(manifest_object_name(backup_id)):
                    absent += 1
                    continue
                return self._chain(target, backup_id)
            except HearthError as exc:
                errors_seen.append(f"{target.label}: {exc.detail}")
        if not errors_seen:
            raise HearthError(BACKUP_ARGUMENT, f"No target holds backup {backup_id}.")
        raise HearthError(
            BACKUP_INVALID,
            f"No target holds a usable chain for backup {backup_id} ({'; '.join(errors_seen)}).",
        )

    def restore(
        self,
        backup_id: str,
        *,
        into: str,
        decryptor: SegmentDecryptor,
        at_seq: int | None = None,
        at_time: datetime | None = None,
        force: bool = False,
        progress: Progress | None = None,
        audit_action: str = "backup.restore",
        index: bool = True,
    ) -> RestoreResult:
        """Restore ``backup_id`` (and the chain before it) into the database at ``into``.

        ``index=False`` (``verify --deep``) leaves the search indexes empty: they are derived
        from the versions and prove nothing about the backup, and rebuilding them was three
        quarters of a deep verify's time. A restore that serves data, and a drill, rebuild them."""
        progress = progress or NullProgress()
        started = time.monotonic()
        try:
            result = self._restore(
                backup_id,
                into,
                decryptor,
                at_seq,
                at_time,
                force,
                progress,
                audit_action,
                started,
                index,
            )
        except HearthError as exc:
            if exc.code is BACKUP_INVALID or isinstance(exc, SegmentError | IntegrityError):
                self._alarm(
                    AlarmKind.BACKUP_VERIFY_FAILED,
                    f"backup:{backup_id}",
                    "A restore found a backup that does not verify; nothing was committed.",
                    {"error": exc.detail[:200]},
                )
            self._audit(audit_action, Outcome.ERROR, exc.code.code)
            raise
        self._audit(audit_action, Outcome.SUCCESS)
        return result

    def _restore(
        self,
        backup_id: str,
        into: str,
        decryptor: SegmentDecryptor,
        at_seq: int | None,
        at_time: datetime | None,
        force: bool,
        progress: Progress,
        audit_action: str,
        started: float,
        index: bool,
    ) -> RestoreResult:
        if at_seq is not None and at_time is not None:
            raise HearthError(BACKUP_ARGUMENT, "Give --at a sequence number or a time, not both.")
        chain = self._find_chain(backup_id)
        manifests = self._upto(chain.manifests, at_seq, at_time)
        last = manifests[-1]
        if any(m.schema_version != last.schema_version for m in manifests):
            raise HearthError(BACKUP_INVALID, "The chain mixes schema versions.")
        # Before anything is written: every segment the restore reads is present, full size.
        for manifest in manifests:
            for seg in manifest.segments:
                info = chain.target.stat(seg.name)
                if info.size != seg.stored_length:
                    raise HearthError(
                        BACKUP_INVALID, f"Segment {seg.name} has the wrong length on the target."
                    )
        db = self._restore_database(into)
        try:
            if not db.is_empty() and not force:
                raise HearthError(
                    BACKUP_ARGUMENT,
                    "The target database is not empty; restore into an empty database, or "
                    "pass --force to replace everything in it.",
                )
            db.drop_everything()
            db.create_schema(last.schema_version)
            result = self._load(
                db, chain.target, manifests, decryptor, at_seq, at_time, progress, index
            )
            # A planner that believes the loaded tables empty scans them instead of using their
            # indexes until autovacuum comes by: $everything took 35 ms instead of 0.1 ms on a
            # restored 120,000-version PostgreSQL database (docs/benchmarks.md).
            db.refresh_statistics()
            newest = db.newest_change_us()
        finally:
            db.close()
        versions, seq, root, rows, indexed = result
        return RestoreResult(
            backup_id=last.backup_id,
            target=chain.target.label,
            engine=db.engine,
            sequence=seq,
            versions=versions,
            merkle_root=root,
            rows=rows,
            indexed=indexed,
            newest_change=from_us(int(newest)) if newest is not None else None,
            seconds=time.monotonic() - started,
        )

    @staticmethod
    def _upto(
        manifests: list[Manifest], at_seq: int | None, at_time: datetime | None
    ) -> list[Manifest]:
        """The prefix of the chain a point-in-time restore reads."""
        if at_seq is not None:
            if at_seq < 0 or at_seq > manifests[-1].sequence.last:
                raise HearthError(
                    BACKUP_ARGUMENT,
                    f"Sequence {at_seq} is not covered by this chain "
                    f"(0 to {manifests[-1].sequence.last}).",
                )
            for i, manifest in enumerate(manifests):
                if manifest.sequence.last >= at_seq:
                    return manifests[: i + 1]
        if at_time is not None:
            if at_time.tzinfo is None:
                raise HearthError(BACKUP_ARGUMENT, "Give --at times with a time zone (or Z).")
            for i, manifest in enumerate(manifests):
                if manifest.created >= at_time:
                    return manifests[: i + 1]
        return manifests

    def _load(
        self,
        db: RestoreDatabase,
        target: BackupTarget,
        manifests: list[Manifest],
        decryptor: SegmentDecryptor,
        at_seq: int | None,
        at_time: datetime | None,
        progress: Progress,
        index: bool,
    ) -> tuple[int, int, str, dict[str, int], int]:
        """Load, prove and finish. With the backup's schema at this Hearth's head, one
        transaction does everything and commits only at the end. A backup from an older schema
        is loaded and its chain root checked at that schema (committed), brought to head by
        the migrations, then finished and proved in a second transaction; if anything fails
        after the first commit, every table is dropped again, so a failed restore always
        leaves the target empty."""
        last = manifests[-1]
        if db.at_head(last.schema_version):
            with db.loading() as loader:
                self._load_rows(loader, target, manifests, decryptor, progress)
                return self._finish(loader, last, at_seq, at_time, progress, index)
        try:
            with db.loading() as loader:
                self._load_rows(loader, target, manifests, decryptor, progress)
                loaded = dict(loader.rows)
            db.upgrade_to_head()
            with db.loading() as loader:
                loader.rows.update(loaded)
                return self._finish(loader, last, at_seq, at_time, progress, index)
        except BaseException:
            db.drop_everything()
            raise

    def _load_rows(
        self,
        loader: Loader,
        target: BackupTarget,
        manifests: list[Manifest],
        decryptor: SegmentDecryptor,
        progress: Progress,
    ) -> None:
        """Every row the restore needs, each segment checked as it is read; the versions read
        must give the newest manifest's chain root."""
        last = manifests[-1]
        chain_tree = MerkleBuilder()
        total = sum(m.row_counts.get(VERSIONS, 0) for m in manifests)
        progress.start("restore", sum(sum(m.row_counts.values()) for m in manifests))
        for manifest in manifests:
            for seg in manifest.segments:
                whole = seg.table not in APPEND_TABLES
                if whole and manifest is not last:
                    continue  # small mutable tables: the newest backup's rows win

                def on_rows(table: str, columns: tuple[str, ...], rows: list[Row]) -> None:
                    if table == VERSIONS:
                        s, m = columns.index("seq"), columns.index("mac")
                        for row in rows:
                            chain_tree.add(int(row[s]), bytes(row[m]))  # type: ignore[arg-type]
                    loader.insert(table, columns, rows)
                    progress.advance(len(rows))

                with target.open_read(seg.name) as stream:
                    read_segment(stream, seg, decryptor, on_rows)
        progress.finish()
        if (chain_tree.leaves, chain_tree.root().hex()) != (
            last.merkle.chain_leaves,
            last.merkle.chain_root,
        ):
            raise IntegrityError("The versions read do not give the chain's Merkle root.")
        if total != chain_tree.leaves:
            raise IntegrityError("The chain's version counts do not add up.")

    def _finish(
        self,
        loader: Loader,
        last: Manifest,
        at_seq: int | None,
        at_time: datetime | None,
        progress: Progress,
        index: bool,
    ) -> tuple[int, int, str, dict[str, int], int]:
        """Point in time, derived state, the proof (every seal and MAC, the Merkle root, the
        counter), the search indexes (unless ``index`` is false) and the restore's own audit
        entry."""
        point = last.sequence.last
        if at_seq is not None:
            point = at_seq
        elif at_time is not None:
            first_after = loader.conn.exec_driver_sql(
                f"SELECT MIN(seq) FROM resource_version WHERE ts_us > {to_us(at_time)}"  # noqa: S608
            ).scalar_one_or_none()
            if first_after is not None:
                point = int(first_after) - 1
        keyring = loader.keyring(self._kek)
        if point < last.sequence.last:
            loader.cut_at(point)
            loader.resign_audit_head(keyring)
        loader.derive_current()
        loader.fix_identity_columns()
        progress.start("check versions", point)
        versions, seq, root = loader.check_versions(keyring, lambda _s: progress.advance())
        progress.finish()
        if seq != point or versions != point:
            raise IntegrityError("The restored versions are not 1 to the chosen sequence.")
        if point == last.sequence.last and root != last.merkle.chain_root:
            raise IntegrityError("The restored versions do not give the chain's Merkle root.")
        counter = loader.conn.exec_driver_sql(
            "SELECT value FROM counter WHERE name = 'version'"
        ).scalar_one()
        if int(counter) != point:
            raise IntegrityError("The restored version counter disagrees with the versions.")
        indexed = loader.reindex(keyring, workers=self._index_workers) if index else 0
        loader.audit(
            keyring,
            self._random,
            [
                AuditRecord(
                    ts=self._clock.now(),
                    actor="system:backup",
                    actor_kind="system",
                    action="backup.restore",
                    outcome=Outcome.SUCCESS,
                    session=self._operator,
                    code=f"{last.backup_id}@{point}",
                )
            ],
        )
        return versions, seq, root, dict(loader.rows), indexed

    # --------------------------------------------------------------------------------- drill
    def drill(
        self, *, decryptor: SegmentDecryptor, progress: Progress | None = None
    ) -> DrillResult:
        """Restore the newest backup into a scratch SQLite database, verifying everything, and
        record the time it took (RTO) and the age of the newest change it restored (RPO)."""
        wanted = self._newest_id()
        if wanted is None:
            raise HearthError(BACKUP_ARGUMENT, "There is no backup to drill with.")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="hearth-drill-") as scratch:
            restored = self.restore(
                wanted,
                into=f"sqlite:///{Path(scratch) / 'drill.db'}",
                decryptor=decryptor,
                progress=progress,
                audit_action="backup.drill",
            )
        rto = time.monotonic() - started
        now = self._clock.now()
        rpo = (now - restored.newest_change).total_seconds() if restored.newest_change else None
        result = DrillResult(wanted, rto, rpo, restored, now)
        if self._state is not None:
            self._state.set(
                BackupState.DRILL,
                json.dumps(
                    {
                        "at": format_time(now),
                        "backup_id": wanted,
                        "rto_seconds": round(rto, 3),
                        "rpo_seconds": None if rpo is None else round(rpo, 3),
                        "versions": restored.versions,
                    },
                    sort_keys=True,
                    separators=(",", ":"),
                ),
            )
        return result

    def last_drill(self) -> dict[str, Any] | None:
        """The last drill's figures (what the compliance report shows)."""
        raw = self._state.get(BackupState.DRILL) if self._state else None
        return json.loads(raw) if raw else None

    # ----------------------------------------------------------------------------- reading
    def iter_backup_rows(
        self,
        backup_id: str,
        *,
        decryptor: SegmentDecryptor,
        tables: Iterable[str] | None = None,
        at: int | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The rows of ``backup_id`` and the chain before it, as ``(table, {column: value})``,
        for tables in ``tables`` (default all), versions up to sequence ``at`` (default the
        backup's last). Rows of a segment are handed out only after the whole segment has
        passed its hash, AEAD and count checks; the chain's Merkle root is checked at the end
        (a mismatch raises ``IntegrityError`` after the last row, so callers that act on rows
        should collect before acting). Small mutable tables come from the newest backup only.
        """
        wanted = set(tables) if tables is not None else None
        chain = self._find_chain(backup_id)
        manifests = self._upto(chain.manifests, at, None)
        last = manifests[-1]
        tree = MerkleBuilder()
        for manifest in manifests:
            for seg in manifest.segments:
                whole = seg.table not in APPEND_TABLES
                if whole and manifest is not last:
                    continue
                if seg.table != VERSIONS and wanted is not None and seg.table not in wanted:
                    continue
                batch: list[tuple[tuple[str, ...], list[Row]]] = []

                with chain.target.open_read(seg.name) as stream:
                    read_segment(stream, seg, decryptor, _collector(batch))
                for columns, rows in batch:
                    if seg.table == VERSIONS:
                        s, m = columns.index("seq"), columns.index("mac")
                        for row in rows:
                            tree.add(int(row[s]), bytes(row[m]))  # type: ignore[arg-type]
                    if wanted is not None and seg.table not in wanted:
                        continue
                    for row in rows:
                        values = dict(zip(columns, row, strict=True))
                        seq = values.get("seq")
                        late = isinstance(seq, int) and at is not None and seq > at
                        if seg.table == VERSIONS and late:
                            continue
                        yield seg.table, values
        if tree.root().hex() != last.merkle.chain_root:
            raise IntegrityError("The versions read do not give the chain's Merkle root.")


def _stored_bytes(manifest: Manifest, manifest_bytes: int) -> int:
    """What one backup put on a target: its segments and its signed manifest object, the
    figure both ``create`` and ``list`` report (docs/design.md, "Backup sizes")."""
    return sum(s.stored_length for s in manifest.segments) + manifest_bytes


def _collector(
    batch: list[tuple[tuple[str, ...], list[Row]]],
) -> Callable[[str, tuple[str, ...], list[Row]], None]:
    def keep(_table: str, columns: tuple[str, ...], rows: list[Row]) -> None:
        batch.append((columns, rows))

    return keep


def _first_failure(reports: dict[str, dict[str, Any]]) -> str:
    for label, body in reports.items():
        if body.get("error"):
            return f"{label}: {body['error']}"[:200]
        for check in body.get("failures", []):
            return f"{label}: {check['check']} on {check['subject']}"[:200]
    return ""


def _chain_json(
    report: ChainReport, backup_id: str | None, target: BackupTarget, service: BackupService
) -> dict[str, Any]:
    """The structured report for one target: all backups, or one and its ancestors."""
    if backup_id is None:
        body = report.to_json()
        body["failures"] = [c.to_json() for c in report.failures]
        if not report.backups:
            body["ok"] = False
            body["failures"].append(
                Check("chain.present", MANIFEST_PREFIX, Status.FAILED, "no backup").to_json()
            )
            body["ok"] = False
        return body
    wanted: set[str] = set()
    by_id = {b.manifest.backup_id: b for b in report.backups if b.manifest is not None}
    current: str | None = backup_id
    missing = False
    while current is not None:
        entry = by_id.get(current)
        if entry is None or entry.manifest is None:
            missing = True
            break
        wanted.add(current)
        manifest = entry.manifest
        if manifest.kind is BackupKind.FULL:
            break
        current = manifest.previous.backup_id if manifest.previous else None
    chosen = [b for b in report.backups if b.manifest and b.manifest.backup_id in wanted]
    failures = [c.to_json() for b in chosen for c in b.failures]
    if missing:
        name = manifest_object_name(current) if current else MANIFEST_PREFIX
        reason = "the backup or a predecessor it needs is missing or does not verify"
        # A damaged manifest parses to nothing: report its own checks.
        damaged = [b for b in report.backups if b.name == name]
        failures += [c.to_json() for b in damaged for c in b.failures]
        failures.append(Check("chain.present", name, Status.FAILED, reason).to_json())
    return {
        "ok": not failures,
        "backup_id": backup_id,
        "target": target.label,
        "backups": [b.to_json() for b in chosen],
        "failures": failures,
    }
